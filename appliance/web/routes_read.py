"""Read routes: runs, entries, proofs (read scope), and the public keys and health check.

SQLite reads are blocking, so the handlers here run in a worker thread (`sync_to_thread=True`)
with that thread's own read-only connection; the proofs run on the event loop (see `ProofsController`)."""

import base64
import time
from datetime import datetime, timezone
from typing import Annotated, Any

from litestar import Controller, Request, Response, get
from litestar.params import PathParameter, QueryParameter

from appliance.anchors.outbox import anchor_status
from appliance.core.entry import MAX_SAFE_INTEGER
from appliance.core.errors import InvalidInput
from appliance.core.hashing import leaf_hash
from appliance.service import Appliance
from appliance.store import keyring, runs
from appliance.store.tree_reader import TileCache, TreeReader
from appliance.web.auth import require_scope
from appliance.web.errors import NotFound
from appliance.web.schemas import EntryOut, HealthOut, KeyOut, KeysOut, ProofOut

# Out of range is "no such entry" (404), not a parameter error; documented in the schema only.
SEQ_PARAM = PathParameter(schema_extra={"minimum": 0, "maximum": MAX_SAFE_INTEGER})
TILE_CACHE_KEY = "tile_cache"


def _appliance(request: Request[Any, Any, Any]) -> Appliance:
    return request.app.state.appliance


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _tree(request: Request[Any, Any, Any], *sizes: int) -> tuple[TreeReader, int]:
    """A reader of the store (with the app's tile cache) and its entry count, which must hold each
    of `sizes` (tree_size, from)."""
    state = request.app.state
    cache = state.get(TILE_CACHE_KEY) or state.setdefault(TILE_CACHE_KEY, TileCache())
    reader = TreeReader(_appliance(request).reader(), cache)
    size = reader.size()
    for name, value in zip(("tree_size", "from"), sizes):
        if value > size:
            raise InvalidInput(f"{name}: the log has {size} entries, so {value} is too large", field=name)
    return reader, size


class EntriesController(Controller):
    path = "/v1/entries"
    guards = [require_scope("read")]

    @get("/{seq:int}", sync_to_thread=True, summary="One entry's canonical bytes and hashes")
    def get_entry(self, request: Request[Any, Any, Any], seq: Annotated[int, SEQ_PARAM]) -> EntryOut:
        found = runs.get_entry(_appliance(request).reader(), seq) if 0 <= seq <= MAX_SAFE_INTEGER else None
        if found is None:
            raise NotFound(f"no entry with seq {seq}")
        data, digest = found
        return EntryOut(seq=seq, entry_hash=bytes(digest).hex(), leaf_hash=leaf_hash(data).hex(),
                        canonical=bytes(data).decode("utf-8"))



class ProofsController(Controller):
    """Proofs with their root, from one read of the store's size and one statement for the tiles.

    On the event loop, not in a worker thread: at 10M entries, with the app's tile cache holding
    the tree's right edge, a proof is ~0.3 ms of CPU (VM at 0.6 s; less when fast) that holds the
    GIL throughout (hashlib keeps it for 65-byte inputs), so a thread would give the loop nothing
    back and the hop costs ~0.2 ms per request. What a thread would hide is a tile read from disk
    when the page cache has lost it (a few ms), and the first proof at a new tree size (~1.2 ms)."""

    path = "/v1/proofs"
    guards = [require_scope("read")]

    @get("/inclusion", sync_to_thread=False, summary="RFC 9162 inclusion proof (hashes in base64)")
    def inclusion(
        self,
        request: Request[Any, Any, Any],
        index: Annotated[int, QueryParameter(ge=0)],
        tree_size: Annotated[int, QueryParameter(ge=1)],
    ) -> ProofOut:
        if index >= tree_size:
            raise InvalidInput(f"index: must be below tree_size ({tree_size})", field="index")
        tree, stored = _tree(request, tree_size)
        root, leaf, proof = tree.inclusion(index, tree_size, stored=stored)
        return ProofOut(kind="inclusion", tree_size=tree_size, root=_b64(root), index=index, leaf_hash=_b64(leaf),
                        hashes=[_b64(h) for h in proof])

    @get("/consistency", sync_to_thread=False, summary="RFC 9162 consistency proof (hashes in base64)")
    def consistency(
        self,
        request: Request[Any, Any, Any],
        from_size: Annotated[int, QueryParameter(name="from", ge=1)],
        to_size: Annotated[int, QueryParameter(name="to", ge=1)],
    ) -> ProofOut:
        if from_size > to_size:
            raise InvalidInput(f"from: must not exceed to ({to_size})", field="from")
        tree, stored = _tree(request, to_size)
        root, proof = tree.consistency(from_size, to_size, stored=stored)
        return ProofOut(kind="consistency", tree_size=to_size, from_size=from_size, root=_b64(root),
                        hashes=[_b64(h) for h in proof])


@get("/v1/keys", sync_to_thread=True, summary="Verifier keys: current, and every key with its validity window")
def keys(request: Request[Any, Any, Any]) -> KeysOut:
    appliance = _appliance(request)
    conn = appliance.reader()
    trusted = keyring.trusted_keys(conn)
    return KeysOut(origin=appliance.settings.origin, log_key=appliance.log_signer.verifier().to_text(),
                   timestamp_key=appliance.clock_signer.verifier().to_text(),
                   history=[KeyOut(**row) for row in keyring.describe(conn)],
                   keys_file=trusted.to_text() if trusted is not None else "")


STORE_FAILURE_MEMORY = 60.0  # seconds


@get("/healthz", sync_to_thread=True, summary="Liveness and the log's size; 503 when a check fails")
def health(request: Request[Any, Any, Any]) -> Response[HealthOut]:
    appliance = _appliance(request)
    size = TreeReader(appliance.reader()).size()
    writer_ok = appliance.writer.running
    checks = {"writer": "ok" if writer_ok else "stopped", "store": "ok"}
    healthy = writer_ok
    # The last commit failed (disk full, read-only, I/O error): appends are being refused. Reported
    # until a commit succeeds, or for STORE_FAILURE_MEMORY seconds without another failed attempt
    # (no write probe: an instance taken out of rotation must be able to come back).
    failure = appliance.writer.last_failure
    if failure is not None and time.monotonic() - failure[0] < STORE_FAILURE_MEMORY:
        checks["store"] = f"failing: the last commit failed: {failure[1]}"
        healthy = False
    # Anchors: a fork, or checkpoints waiting past the lag threshold, fail the check (503): nobody
    # outside the box holds our recent checkpoints. One "anchor <name>" check per anchor.
    names = [anchor.name for anchor in appliance.anchors]
    for state in anchor_status(appliance.reader(), names, datetime.now(timezone.utc)):
        verdict, line = state.health(appliance.settings.anchor_lag_threshold)
        checks[f"anchor {state.anchor}"] = line
        healthy = healthy and verdict == "ok"
    if names and appliance.outbox is not None and not appliance.outbox.running:
        checks["anchor outbox"] = "stopped"
        healthy = False
    body = HealthOut(status="ok" if healthy else "failing", tree_size=size, checks=checks)
    return Response(body, status_code=200 if healthy else 503)
