"""Errors the store raises; the web layer maps each to one HTTP status in one table."""

from appliance.core.errors import RunlogError


class StoreError(RunlogError):
    """The store cannot be opened or is not in a state the appliance can use."""


class StoreUnavailable(StoreError):
    """The store cannot accept writes right now (disk full, read-only, shutting down); retry later."""


class StoreCorrupt(StoreError):
    """The stored log does not verify; the appliance refuses to continue it."""

    def __init__(self, message: str, *, seq: int | None = None) -> None:
        super().__init__(message if seq is None else f"seq {seq}: {message}")
        self.seq = seq


class IdempotencyConflict(RunlogError):
    """An Idempotency-Key was reused with different content."""
