"""What a full-store verification found: a `VerifyReport` of counts and `Failure`s, as text or JSON."""

from dataclasses import asdict, dataclass
from typing import Any

# The order failures are told in: what the others depend on first (a wrong key fails every
# signature, a broken chain every later link), each check's failures by seq.
_CHECK_ORDER = ("keys", "entries", "tree", "checkpoints", "anchors", "daily-roots", "runs")


@dataclass(frozen=True)
class Failure:
    """One thing that does not hold.

    `check` names the part of the store (keys, entries, tree, checkpoints, anchors, daily-roots,
    runs); `reason` how it fails (the chain's edited / missing / inserted / reordered / truncated /
    forked / malformed, or signature, origin, mismatch, clock, unreachable); `seq` is the first
    entry concerned, `size` the tree size of a checkpoint, `anchor` the anchor's name."""

    check: str
    reason: str
    message: str
    seq: int | None = None
    size: int | None = None
    anchor: str | None = None

    def sort_key(self) -> tuple:
        position = self.seq if self.seq is not None else (self.size if self.size is not None else 2**64)
        rank = _CHECK_ORDER.index(self.check) if self.check in _CHECK_ORDER else len(_CHECK_ORDER)
        return (rank, position)

    def describe(self) -> str:
        where = [f"seq {self.seq}"] if self.seq is not None else []
        if self.size is not None:
            where.append(f"tree size {self.size}")
        if self.anchor is not None:
            where.append(f"anchor {self.anchor}")
        return f"{self.check}: {self.reason}{' at ' + ', '.join(where) if where else ''}: {self.message}"


@dataclass(frozen=True)
class AnchorSummary:
    """One anchor as verified: how many checkpoints it holds and the largest tree among them."""

    name: str
    checkpoints: int
    largest: int | None


@dataclass(frozen=True)
class VerifyReport:
    """The verdict on one store. `ok` only when every check ran and held."""

    db: str
    origin: str | None
    log_key: str | None
    clock_key: str | None
    entries: int = 0
    runs: int = 0
    tiles: int = 0
    checkpoints: int = 0
    daily_roots: int = 0
    latest_checkpoint: int | None = None
    latest_signed_at: str | None = None  # the newest timestamp cosignature among the checkpoints that hold
    root: str | None = None
    anchors: tuple[AnchorSummary, ...] | None = None
    failures: tuple[Failure, ...] = ()
    notes: tuple[str, ...] = ()
    seconds: float = 0.0
    workers: int = 1

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def first_failure(self) -> Failure | None:
        return min(self.failures, key=Failure.sort_key) if self.failures else None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ok=self.ok, first_failure=None if self.ok else asdict(self.first_failure))  # type: ignore[arg-type]
        data["entries_per_second"] = round(self.entries / self.seconds) if self.seconds else None
        return data

    def to_text(self) -> str:
        lines = [f"store {self.db} (origin {self.origin or 'unknown'})"]
        lines.append(f"  entries:     {self.entries:,} (hashes, canonical bytes, global chain, {self.runs:,} run chains)")
        lines.append(f"  tree:        rebuilt from the entries; {self.tiles:,} stored tiles compared"
                     + (f"; root at {self.entries:,}: {self.root}" if self.root else ""))
        latest = f", latest at tree size {self.latest_checkpoint:,}" if self.latest_checkpoint is not None else ""
        latest += f", newest signed at {self.latest_signed_at}" if self.latest_signed_at else ""
        lines.append(f"  checkpoints: {self.checkpoints:,} signed by {self.log_key or 'no key'}{latest}")
        lines.append(f"  daily roots: {self.daily_roots:,}")
        if self.anchors is not None:
            for anchor in self.anchors:
                largest = f", largest tree {anchor.largest:,}" if anchor.largest is not None else ""
                lines.append(f"  anchor:      {anchor.name}: {anchor.checkpoints:,} checkpoints{largest}")
        else:
            lines.append("  anchors:     not checked (add --anchors)")
        lines.extend(f"  note:        {note}" for note in self.notes)
        rate = f" ({self.entries / self.seconds:,.0f} entries/s, {self.workers} worker process" \
               f"{'es' if self.workers != 1 else ''})" if self.seconds and self.entries else ""
        lines.append(f"  took {self.seconds:.2f} s{rate}")
        if self.ok:
            lines.append("VERIFIED: every check held")
        else:
            first = self.first_failure
            assert first is not None
            lines.append(f"FAILED ({len(self.failures)} problem{'s' if len(self.failures) != 1 else ''}); first: "
                         f"{first.describe()}")
            for failure in sorted(self.failures, key=Failure.sort_key):
                if failure is not first:
                    lines.append(f"  also: {failure.describe()}")
        return "\n".join(lines)
