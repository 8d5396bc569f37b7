"""Tile storage for Merkle proofs (C2SP tlog-tiles idea): full tiles of 256 hashes.

First draft of the schema only; see the module's owner for the reader and writer.
"""

TILE_SCHEMA = [
    "CREATE TABLE tiles (id INTEGER PRIMARY KEY, hashes BLOB NOT NULL)",
]
