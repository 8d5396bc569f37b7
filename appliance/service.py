"""Set up and open an appliance: data directory, keys, store, admin token, writer.

`init_appliance` is idempotent: it creates what is missing and never replaces a key or an
existing admin token. `open_appliance` loads what `init_appliance` made and starts the writer.
"""

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from appliance.anchors.base import Anchor
from appliance.anchors.config import build_anchors
from appliance.anchors.outbox import Outbox
from appliance.checkpointer import Checkpointer
from appliance.core.cosignature import CosignatureSigner, generate_cosigner
from appliance.core.keys import NoteSigner, generate_signer
from appliance.core.timefmt import format_utc
from appliance.dirsync import fsync_directory, make_directory
from appliance.key_custody import clock_key_name, open_keys
from appliance.keyfile import save_signer, save_verifier
from appliance.settings import Settings
from appliance.store.db import connect, get_meta, migrate, set_meta
from appliance.store.errors import StoreError
from appliance.store.tokens import TokenAuthenticator, create_token, hash_token, list_tokens
from appliance.store.writer import Writer

LOG_KEY, CLOCK_KEY = "log", "clock"
# At shutdown, for the anchors' one try at the last checkpoint; with uvicorn's graceful timeout
# (cli.GRACEFUL_SHUTDOWN_SECONDS) it stays below Docker's default 10 s stop timeout.
SHUTDOWN_ANCHOR_SECONDS = 3.0

log = logging.getLogger("runlog.service")


@dataclass(frozen=True)
class InitResult:
    created_store: bool
    admin_token: str | None  # set only when a token was generated now: show it once


def _now() -> str:
    return format_utc(datetime.now(timezone.utc))


def _ensure_key(keys_dir: Path, stem: str, make: Callable[[], NoteSigner | CosignatureSigner]) -> None:
    private = keys_dir / f"{stem}.key"
    if private.exists():
        return
    signer = make()
    save_signer(private, signer)
    public = keys_dir / f"{stem}.pub"
    if public.exists():
        public.unlink()  # a stale public key without its private half would mislead verifiers
    save_verifier(public, signer.verifier())


def _ensure_admin_token(conn: sqlite3.Connection, settings: Settings) -> str | None:
    active = [t for t in list_tokens(conn, include_revoked=False) if "admin" in t.scopes]
    if settings.admin_token is not None:
        digest = hash_token(settings.admin_token)
        known = conn.execute("SELECT 1 FROM tokens WHERE token_hash = ?", (digest,)).fetchone()
        if not known:
            names = {t.name for t in list_tokens(conn, include_revoked=False)}
            name = "admin" if "admin" not in names else "admin-env"
            create_token(conn, name, {"admin"}, now=_now(), token=settings.admin_token)
        return None
    if active:
        return None
    token, _ = create_token(conn, "admin", {"admin"}, now=_now())
    return token


def init_appliance(settings: Settings) -> InitResult:
    """Create the data and keys directories, both signing keys, the store and an admin token."""
    make_directory(settings.data_dir)  # new directories are synced into their parents
    make_directory(settings.keys_dir, mode=0o700)
    if settings.signing_key_file is None:  # else the log key is mounted from outside (RUNLOG_SIGNING_KEY_FILE)
        _ensure_key(settings.keys_dir, LOG_KEY, lambda: generate_signer(settings.origin))
    _ensure_key(settings.keys_dir, CLOCK_KEY, lambda: generate_cosigner(clock_key_name(settings.origin)))
    created = not settings.db_path.exists()
    conn = connect(settings.db_path, synchronous=settings.synchronous)
    try:
        migrate(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            origin = get_meta(conn, "origin")
            if origin is None:
                set_meta(conn, "origin", settings.origin)
                set_meta(conn, "created_at", _now())
            elif origin != settings.origin:
                raise StoreError(f"this store belongs to origin {origin!r}, but RUNLOG_ORIGIN is "
                                 f"{settings.origin!r}; set RUNLOG_ORIGIN={origin}")
            token = _ensure_admin_token(conn, settings)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        open_keys(settings.keys_dir, settings.origin, conn, signing_key_file=settings.signing_key_file)  # key history
    finally:
        conn.close()
    if created:  # SQLite syncs the directory for its journal and WAL files, not for the database file
        fsync_directory(settings.db_path.parent)
    return InitResult(created, token)


@dataclass
class Appliance:
    """Everything a running appliance holds open."""

    settings: Settings
    log_signer: NoteSigner
    clock_signer: CosignatureSigner
    writer: Writer
    tokens: TokenAuthenticator
    anchors: tuple[Anchor, ...] = ()
    outbox: Outbox | None = None  # publishes checkpoints to `anchors`; its status feeds /healthz
    checkpointer: Checkpointer | None = None

    def __post_init__(self) -> None:
        self._local = threading.local()

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (opened on first use, reused after)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.settings.db_path, readonly=True)
        return conn

    def close(self) -> None:
        """Shut down in the order that loses nothing and publishes everything: the writer commits
        what is queued, the last checkpoint covers every acknowledged entry, the anchors get one
        try at it (what they miss is published at the next start)."""
        started = time.monotonic()
        self.writer.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        pushed = self.outbox.stop_then_push(SHUTDOWN_ANCHOR_SECONDS) if self.outbox is not None else []
        self.tokens.close()
        anchors = "timed out" if pushed is None else [
            {"anchor": p.anchor, "published": p.published, "pending": p.pending, "error": p.error} for p in pushed]
        log.info("stopped", extra={"fields": {"entries": self.writer.size, "anchors": anchors,
                                              "seconds": round(time.monotonic() - started, 3)}})


def open_appliance(settings: Settings) -> Appliance:
    """Load the keys, verify and restore the store, start the writer and the checkpointer. Run
    `init_appliance` first."""
    conn = connect(settings.db_path, synchronous=settings.synchronous)
    try:  # the current keys, checked against the store's key history (and a rotation finished)
        signers = open_keys(settings.keys_dir, settings.origin, conn, signing_key_file=settings.signing_key_file)
    finally:
        conn.close()
    log_signer, clock_signer = signers.log, signers.clock
    anchors = build_anchors(settings)  # before starting anything: a bad anchor setting stops here
    writer = Writer(settings.db_path, origin=settings.origin, signer=log_signer, synchronous=settings.synchronous)
    writer.start()
    tokens = TokenAuthenticator(lambda: connect(settings.db_path, readonly=True))
    checkpointer = Checkpointer(settings.db_path, signers, keys_dir=settings.keys_dir,
                                interval=settings.checkpoint_interval, anchors=[anchor.name for anchor in anchors],
                                synchronous=settings.synchronous)
    checkpointer.start()  # cuts the daily roots missed while the appliance was down
    outbox = Outbox(settings.db_path, anchors, origin=settings.origin)
    outbox.start()
    log.info("started", extra={"fields": {"origin": settings.origin, "entries": writer.size,
                                          "anchors": [anchor.name for anchor in anchors],
                                          "checkpoint_interval": settings.checkpoint_interval}})
    return Appliance(settings, log_signer, clock_signer, writer, tokens, anchors, outbox, checkpointer=checkpointer)

