"""The SQLite store: schema, the single writer, tiles for proofs, and read queries."""
