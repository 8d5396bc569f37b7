"""API tokens: bearer secrets stored only as SHA-256 hashes, with scopes, names and revocation.

A token string is `rl_` followed by 43 base64url characters (32 random bytes). It is returned
once, by `create_token`; the store keeps its SHA-256 and nothing else. A token's name is also
the `source` of the events appended with it, so names follow a subset of the entry `source`
rule: 1..64 characters of `[A-Za-z0-9._-]`. At most one active token holds a name.

Transactions: `create_token` and `revoke_token` run inside a transaction that the caller owns
and commits; they refuse a connection that is not in one, so the name check and the write can
never be split by another writer. On a connection from `db.connect` (autocommit mode):

    conn.execute("BEGIN IMMEDIATE")
    with conn:  # commits on success, rolls back on an exception
        secret, info = create_token(conn, "ci", ["append"], now=now)
"""

import base64
import hashlib
import hmac
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from appliance.core.errors import EntryError, InvalidInput, RunlogError
from appliance.core.timefmt import check_utc

SCOPES = frozenset({"append", "read", "export", "admin"})
TOKEN_PREFIX = "rl_"
TOKEN_BYTES = 32
MIN_ADOPTED_TOKEN_CHARS = 24
MAX_TOKEN_CHARS = 512
MAX_NAME_CHARS = 64
DEFAULT_CACHE_TTL = 0.5
MISS_REFRESH_INTERVAL = 0.05

_NAME = re.compile(r"[A-Za-z0-9._-]{1,%d}" % MAX_NAME_CHARS)
# RFC 6750 b64token: what may follow "Bearer " in an Authorization header.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


class TokenError(InvalidInput):
    """A token name, scope list or adopted token string breaks the token rules."""


class TokenNameTaken(TokenError):
    """An active token already holds this name."""


class TokenReused(TokenError):
    """This exact token string is already stored (active or revoked); a secret is never reissued."""


class TokenNotFound(TokenError):
    """No active token has this name or id."""


class NotInTransaction(RunlogError):
    """A token write was called on a connection with no open transaction."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A stored token without its secret. `scopes` as granted; use `allows` to check one."""

    id: int
    name: str
    scopes: frozenset[str]
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        """True if this token grants `scope`; admin grants every scope."""
        return scope in self.scopes or "admin" in self.scopes


def hash_token(token: str) -> bytes:
    """SHA-256 of the token's UTF-8 bytes: the only form the store keeps."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def new_token(rand: Callable[[int], bytes] = os.urandom) -> str:
    """A fresh token string: `rl_` + base64url (no padding) of 32 bytes from `rand`."""
    raw = rand(TOKEN_BYTES)
    if type(raw) is not bytes or len(raw) != TOKEN_BYTES:
        raise RunlogError(f"the random source must return {TOKEN_BYTES} bytes")
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def parse_scopes(text: str) -> frozenset[str]:
    """Scopes from text such as "append,read" or "append read" (for the CLI and forms)."""
    if type(text) is not str:
        raise TokenError("scopes: must be a string of scope names", field="scopes")
    return _check_scopes([part for part in re.split(r"[\s,]+", text) if part])


def _check_scopes(scopes: Iterable[str]) -> frozenset[str]:
    if isinstance(scopes, (str, bytes)) or not isinstance(scopes, Iterable):
        raise TokenError("scopes: must be a list of scope names, not a single string", field="scopes")
    chosen = frozenset(scopes)
    unknown = sorted(str(scope) for scope in chosen - SCOPES)
    if unknown:
        raise TokenError(f"scopes: unknown scope {unknown[0]!r:.40}; choose from {', '.join(sorted(SCOPES))}",
                         field="scopes")
    if not chosen:
        raise TokenError("scopes: at least one scope is required", field="scopes")
    return chosen


def _check_name(name: object) -> str:
    if type(name) is not str or _NAME.fullmatch(name) is None:
        raise TokenError(f"name: must be 1..{MAX_NAME_CHARS} characters of A-Z a-z 0-9 . _ -, got {name!r:.40}",
                         field="name")
    return name


def _check_now(now: object) -> str:
    try:
        check_utc(now, field="now")  # type: ignore[arg-type]
    except EntryError as error:
        raise TokenError(str(error), field="now") from None
    return now  # type: ignore[return-value]


def _check_adopted(token: object) -> str:
    if type(token) is not str or not MIN_ADOPTED_TOKEN_CHARS <= len(token) <= MAX_TOKEN_CHARS:
        raise TokenError(f"token: must be {MIN_ADOPTED_TOKEN_CHARS}..{MAX_TOKEN_CHARS} characters", field="token")
    if _B64TOKEN.fullmatch(token) is None:
        raise TokenError("token: may hold only A-Z a-z 0-9 - . _ ~ + / and trailing = (RFC 6750)", field="token")
    return token


def _require_transaction(conn: sqlite3.Connection) -> None:
    if not conn.in_transaction:
        raise NotInTransaction("token writes run inside the caller's transaction: BEGIN IMMEDIATE first")


def _info(row: tuple) -> TokenInfo:
    token_id, name, scopes, created_at, revoked_at = row
    return TokenInfo(token_id, name, frozenset(scopes.split()), created_at, revoked_at)


_COLUMNS = "id, name, scopes, created_at, revoked_at"


def create_token(
    conn: sqlite3.Connection,
    name: str,
    scopes: Iterable[str],
    *,
    now: str,
    token: str | None = None,
    rand: Callable[[int], bytes] = os.urandom,
) -> tuple[str, TokenInfo]:
    """Store a new token and return its secret (show it once, it is not kept) and its info.

    Preconditions: `conn` is in a transaction the caller commits. `now` is strict UTC RFC 3339.
    `token`, when given, is adopted as is (e.g. RUNLOG_ADMIN_TOKEN): 24..512 characters of RFC
    6750 token syntax. Raises `TokenError` (field named), `TokenNameTaken` if an active token has
    the name, `TokenReused` if the exact secret was ever stored before.
    """
    _require_transaction(conn)
    _check_name(name)
    chosen = _check_scopes(scopes)
    _check_now(now)
    secret = new_token(rand) if token is None else _check_adopted(token)
    if conn.execute("SELECT 1 FROM tokens WHERE name = ? AND revoked_at IS NULL", (name,)).fetchone():
        raise TokenNameTaken(f"name: an active token is already named {name!r}; revoke it first", field="name")
    digest = hash_token(secret)
    if conn.execute("SELECT 1 FROM tokens WHERE token_hash = ?", (digest,)).fetchone():
        raise TokenReused("token: this token string was already issued; choose another", field="token")
    cursor = conn.execute("INSERT INTO tokens (name, token_hash, scopes, created_at) VALUES (?, ?, ?, ?)",
                          (name, digest, " ".join(sorted(chosen)), now))
    return secret, TokenInfo(cursor.lastrowid, name, chosen, now)  # type: ignore[arg-type]


def list_tokens(conn: sqlite3.Connection, *, include_revoked: bool = True) -> list[TokenInfo]:
    """Every token (never its secret or hash), oldest first."""
    where = "" if include_revoked else " WHERE revoked_at IS NULL"
    return [_info(row) for row in conn.execute(f"SELECT {_COLUMNS} FROM tokens{where} ORDER BY id")]


def revoke_token(conn: sqlite3.Connection, name_or_id: str | int, *, now: str) -> TokenInfo:
    """Revoke the active token with this name (a str) or id (an int); return it as revoked.

    Preconditions: `conn` is in a transaction the caller commits. Raises `TokenNotFound` if no
    active token matches (including one already revoked). A `TokenAuthenticator` stops accepting
    the token within its TTL, or at once after `invalidate()`.
    """
    _require_transaction(conn)
    _check_now(now)
    if type(name_or_id) is int:
        column, label = "id", "id"
    else:
        _check_name(name_or_id)
        column, label = "name", "name"
    row = conn.execute(f"SELECT {_COLUMNS} FROM tokens WHERE {column} = ? AND revoked_at IS NULL",
                       (name_or_id,)).fetchone()
    if row is None:
        raise TokenNotFound(f"{label}: no active token with {label} {name_or_id!r}", field=label)
    conn.execute("UPDATE tokens SET revoked_at = ? WHERE id = ?", (now, row[0]))
    return _info((*row[:4], now))


class TokenAuthenticator:
    """Checks presented bearer tokens against the active tokens, cached for `ttl` seconds.

    Safe to share between threads. `conn_factory` opens a connection to the store (read-only is
    enough); it is called once, and the connection is used under a lock. A revocation takes
    effect within `ttl` (default 0.5 s) or immediately after `invalidate()`. Store errors
    propagate: authentication never succeeds on a table it could not read.
    """

    def __init__(self, conn_factory: Callable[[], sqlite3.Connection], *, ttl: float = DEFAULT_CACHE_TTL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not 0 <= ttl <= 1:
            raise InvalidInput("ttl: must be 0..1 seconds so revocation takes effect within a second", field="ttl")
        self._conn_factory, self._ttl, self._clock = conn_factory, ttl, clock
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._active: tuple[tuple[bytes, TokenInfo], ...] = ()
        self._expires = float("-inf")
        self._loaded_at = float("-inf")
        self._generation = 0

    def invalidate(self) -> None:
        """Reread the table on the next call (after create or revoke in this process)."""
        self._generation += 1
        self._expires = float("-inf")

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            self._expires = float("-inf")

    def _current(self) -> tuple[tuple[bytes, TokenInfo], ...]:
        if self._clock() < self._expires:
            return self._active
        with self._lock:
            now = self._clock()
            if now >= self._expires:
                generation = self._generation
                if self._conn is None:
                    self._conn = self._conn_factory()
                rows = self._conn.execute(
                    f"SELECT token_hash, {_COLUMNS} FROM tokens WHERE revoked_at IS NULL").fetchall()
                self._active = tuple((bytes(row[0]), _info(row[1:])) for row in rows)
                self._loaded_at = now
                # An invalidate() during the read may describe a change the read missed.
                self._expires = now + self._ttl if generation == self._generation else float("-inf")
            return self._active

    def authenticate(self, presented: str) -> TokenInfo | None:
        """The active token whose secret is `presented`, or None.

        Every stored hash is compared with `hmac.compare_digest`, without stopping at a match, so
        the time taken does not depend on which token (if any) matched or where they differ.
        """
        if type(presented) is not str or not 0 < len(presented) <= MAX_TOKEN_CHARS or not presented.isascii():
            return None
        digest = hash_token(presented)
        found = self._match(self._current(), digest)
        if found is None and self._clock() - self._loaded_at >= MISS_REFRESH_INTERVAL:
            # A token created a moment ago (by `runlog token create`) works at once; unknown
            # tokens cause at most one table read per interval, so guessing cannot load the store.
            self.invalidate()
            found = self._match(self._current(), digest)
        return found

    @staticmethod
    def _match(active: tuple[tuple[bytes, TokenInfo], ...], digest: bytes) -> TokenInfo | None:
        found = None
        for stored, info in active:
            if hmac.compare_digest(stored, digest):
                found = info
        return found
