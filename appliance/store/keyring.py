"""The key history in the store: every log and clock key the appliance has used, with its window.

One append-only table of events, `valid_from` and `valid_until` per verifier key string, in
whole UTC seconds (`YYYY-MM-DDTHH:MM:SSZ`); UPDATE and DELETE are refused by triggers, so history
is never lost. Per role, the *current* key is the one that became valid last; an older key with no
`valid_until` yet is *retiring*: it still signs the next checkpoint (the handover) with the
current key, and that checkpoint's time closes its window.
"""

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.core.key_history import KeyWindow, TrustedKeys, format_seconds, parse_seconds, window_from_words
from appliance.store.errors import StoreError

ROLES = ("log", "clock")
KEY_HISTORY_SCHEMA = [
    """CREATE TABLE key_history (
        id INTEGER PRIMARY KEY,
        role TEXT NOT NULL CHECK (role IN ('log', 'clock')),
        key TEXT NOT NULL,
        event TEXT NOT NULL CHECK (event IN ('valid_from', 'valid_until')),
        at TEXT NOT NULL,
        UNIQUE (key, event)
    )""",
    *(f"CREATE TRIGGER key_history_no_{action.lower()} BEFORE {action} ON key_history "
      f"BEGIN SELECT RAISE(ABORT, 'runlog: the key history is append-only: {action} is refused'); END"
      for action in ("UPDATE", "DELETE")),
]


def create_key_history(conn: sqlite3.Connection) -> None:
    """The migration that adds the table (run inside the migration's transaction)."""
    for statement in KEY_HISTORY_SCHEMA:
        conn.execute(statement)


@dataclass(frozen=True)
class StoredKey:
    """One key of the history: its role, verifier key string and window (until None: still open)."""

    role: str
    key: str
    valid_from: int
    valid_until: int | None

    def window(self) -> KeyWindow:
        until = "-" if self.valid_until is None else format_seconds(self.valid_until)
        return window_from_words([self.role, self.key, format_seconds(self.valid_from), until], "key history")


def history(conn: sqlite3.Connection) -> list[StoredKey]:
    """Every key, oldest first (by when it became valid, then by when it was recorded); none for a
    store whose schema predates the key history (opened read-only, not migrated)."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'key_history'").fetchone():
        return []
    rows = conn.execute(
        "SELECT role, key, at, (SELECT at FROM key_history u WHERE u.key = f.key AND u.event = 'valid_until') "
        "FROM key_history f WHERE event = 'valid_from' ORDER BY id").fetchall()
    keys = [StoredKey(role, key, parse_seconds(start), None if end is None else parse_seconds(end))
            for role, key, start, end in rows]
    return sorted(keys, key=lambda k: k.valid_from)  # stable: recording order among equal starts


def trusted_keys(conn: sqlite3.Connection) -> TrustedKeys | None:
    """The history as the verifier's trusted keys, or None for a store that has none recorded."""
    windows = [key.window() for key in history(conn)]
    if not any(w.role == "log" for w in windows):
        return None
    return TrustedKeys(tuple(w for w in windows if w.role == "log"), tuple(w for w in windows if w.role == "clock"))


def current(conn: sqlite3.Connection, role: str) -> StoredKey | None:
    """The key of `role` that became valid last, or None."""
    keys = [key for key in history(conn) if key.role == role]
    return keys[-1] if keys else None


def retiring(conn: sqlite3.Connection, role: str) -> list[StoredKey]:
    """Keys of `role` replaced by a newer one whose window is still open (awaiting the handover)."""
    keys = [key for key in history(conn) if key.role == role]
    return [key for key in keys[:-1] if key.valid_until is None]


def record(conn: sqlite3.Connection, role: str, key: str, event: str, at: int) -> None:
    """Append one event. Precondition: inside the caller's transaction."""
    if role not in ROLES:
        raise StoreError(f"a key's role is log or clock, not {role!r}")
    try:
        conn.execute("INSERT INTO key_history (role, key, event, at) VALUES (?, ?, ?, ?)",
                     (role, key, event, format_seconds(at)))
    except sqlite3.IntegrityError as error:
        raise StoreError(f"the key history already records {event} for {key[:60]}") from error


def record_initial(conn: sqlite3.Connection, keys: Iterable[tuple[str, str]], at: int) -> bool:
    """Record the first keys (role, verifier key string) as valid from `at`, unless the history
    already holds keys. Returns whether it recorded them. Precondition: inside a transaction."""
    if conn.execute("SELECT 1 FROM key_history LIMIT 1").fetchone():
        return False
    for role, key in keys:
        record(conn, role, key, "valid_from", at)
    return True


def check_current(conn: sqlite3.Connection, role: str, key: str, where: str) -> None:
    """Refuse to sign with a key the history does not list as the current one of its role."""
    stored = current(conn, role)
    if stored is not None and stored.key != key:
        raise StoreError(f"{where} holds {role} key {key.split('+')[1] if '+' in key else key!r}, but the store's "
                         f"current {role} key is {stored.key.split('+')[1]} (valid from "
                         f"{format_seconds(stored.valid_from)}); the keys and the store do not belong together, or "
                         "a rotation was not finished (start the appliance, or run `runlog keys rotate` again)")


def describe(conn: sqlite3.Connection) -> list[dict]:
    """The history for people and APIs, oldest first: role, key string, key ID, window, state."""
    keys = history(conn)
    latest = {key.role: key.key for key in keys}

    def state(key: StoredKey) -> str:
        return "current" if latest[key.role] == key.key else "retiring" if key.valid_until is None else "retired"

    return [{"role": key.role, "key": key.key, "key_id": key.key.split("+")[1],
             "valid_from": format_seconds(key.valid_from),
             "valid_until": None if key.valid_until is None else format_seconds(key.valid_until),
             "state": state(key)} for key in keys]
