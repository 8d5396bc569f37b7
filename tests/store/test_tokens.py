"""API tokens against a real SQLite store: secrets kept only as hashes, scopes, names, revocation."""

import base64
import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.core.entry import Entry, encode_entry
from appliance.store.db import connect, migrate
from appliance.store.tokens import (
    NotInTransaction,
    TokenAuthenticator,
    TokenError,
    TokenNameTaken,
    TokenNotFound,
    TokenReused,
    create_token,
    list_tokens,
    parse_scopes,
    revoke_token,
)

NOW = "2026-11-28T10:00:00.000000Z"
LATER = "2026-11-28T11:00:00.000000Z"
ADMIN_SECRET = "s3cr3t-admin-token-from-the-environment"


@pytest.fixture
def path(tmp_path):
    path = tmp_path / "store.sqlite"
    conn = connect(path)
    migrate(conn)
    conn.close()
    return path


@pytest.fixture
def conn(path):
    conn = connect(path)
    yield conn
    conn.close()


def create(conn, name, scopes, **kwargs):
    conn.execute("BEGIN IMMEDIATE")
    with conn:
        return create_token(conn, name, scopes, now=kwargs.pop("now", NOW), **kwargs)


def revoke(conn, name_or_id, now=LATER):
    conn.execute("BEGIN IMMEDIATE")
    with conn:
        return revoke_token(conn, name_or_id, now=now)


def counting_rand(size):
    return bytes(range(size))


def test_a_new_token_is_rl_and_43_base64url_chars_of_32_random_bytes(conn):
    secret, info = create(conn, "ci", ["append"], rand=counting_rand)
    assert secret == "rl_" + base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")
    assert len(secret) == 3 + 43
    assert (info.name, info.scopes, info.created_at, info.revoked_at) == ("ci", frozenset({"append"}), NOW, None)


def test_only_the_sha256_of_the_secret_is_stored(conn, path):
    secret, _ = create(conn, "ci", ["append"])
    stored = conn.execute("SELECT token_hash FROM tokens").fetchone()[0]
    assert stored == hashlib.sha256(secret.encode()).digest()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert secret.encode() not in path.read_bytes()
    assert all(not hasattr(info, "token_hash") and secret not in repr(info) for info in list_tokens(conn))


def test_two_tokens_never_share_a_secret(conn):
    first, _ = create(conn, "one", ["read"])
    second, _ = create(conn, "two", ["read"])
    assert first != second


def test_admin_implies_every_scope_and_others_only_themselves(conn):
    _, admin = create(conn, "root", ["admin"])
    _, reader = create(conn, "dashboard", ["read", "export"])
    assert all(admin.allows(scope) for scope in ("append", "read", "export", "admin"))
    assert reader.allows("read") and reader.allows("export")
    assert not reader.allows("append") and not reader.allows("admin")


@pytest.mark.parametrize("scopes", [[], ["write"], ["read", "Admin"], "read", None])
def test_bad_scope_lists_are_refused_and_write_nothing(conn, scopes):
    with pytest.raises(TokenError) as caught:
        create(conn, "ci", scopes)
    assert caught.value.field == "scopes"
    assert list_tokens(conn) == []


def test_parse_scopes_reads_comma_or_space_separated_text():
    assert parse_scopes("append,read") == parse_scopes(" append  read ") == frozenset({"append", "read"})
    with pytest.raises(TokenError, match="unknown scope 'wrote'"):
        parse_scopes("append,wrote")
    with pytest.raises(TokenError, match="at least one"):
        parse_scopes(" , ")


@pytest.mark.parametrize("name", ["", "x" * 65, "has space", "naïve", "semi;colon", "slash/", 7, None])
def test_bad_names_are_refused(conn, name):
    with pytest.raises(TokenError) as caught:
        create(conn, name, ["append"])
    assert caught.value.field == "name"


@given(st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True))
def test_every_valid_name_is_a_valid_entry_source(name):
    entry = Entry(seq=0, trace_id="1" * 32, run_seq=0, step="s", status="info", ts=NOW, received_at=NOW,
                  source=name, prev=None, run_prev=None)
    assert encode_entry(entry)


def test_a_second_active_token_with_the_same_name_is_refused_until_the_first_is_revoked(conn):
    create(conn, "ci", ["append"])
    with pytest.raises(TokenNameTaken) as caught:
        create(conn, "ci", ["read"])
    assert caught.value.field == "name"
    revoke(conn, "ci")
    _, again = create(conn, "ci", ["read"])
    assert [(t.name, t.active) for t in list_tokens(conn)] == [("ci", False), ("ci", True)]
    assert list_tokens(conn, include_revoked=False) == [again]


def test_an_adopted_token_is_stored_as_given(conn, path):
    secret, info = create(conn, "admin", ["admin"], token=ADMIN_SECRET)
    assert secret == ADMIN_SECRET
    assert TokenAuthenticator(lambda: connect(path, readonly=True)).authenticate(ADMIN_SECRET) == info


@pytest.mark.parametrize("token", ["x" * 23, "y" * 513, "has a space in it somewhere", "quote\"inside-a-long-token",
                                   "=leading-padding-is-not-b64token", "ünïcödé-ünïcödé-ünïcödé-ü", 12345])
def test_adopted_tokens_must_be_long_and_header_safe(conn, token):
    with pytest.raises(TokenError) as caught:
        create(conn, "admin", ["admin"], token=token)
    assert caught.value.field == "token"


def test_a_secret_is_never_issued_twice_even_after_revocation(conn):
    create(conn, "admin", ["admin"], token=ADMIN_SECRET)
    revoke(conn, "admin")
    with pytest.raises(TokenReused):
        create(conn, "admin2", ["admin"], token=ADMIN_SECRET)


def test_writes_refuse_a_connection_outside_a_transaction(conn):
    with pytest.raises(NotInTransaction):
        create_token(conn, "ci", ["append"], now=NOW)
    create(conn, "ci", ["append"])
    with pytest.raises(NotInTransaction):
        revoke_token(conn, "ci", now=LATER)
    assert list_tokens(conn)[0].active


def test_a_rolled_back_transaction_leaves_no_token(conn):
    conn.execute("BEGIN IMMEDIATE")
    create_token(conn, "ci", ["append"], now=NOW)
    conn.execute("ROLLBACK")
    assert list_tokens(conn) == []


@pytest.mark.parametrize("now", ["2026-11-28 10:00:00", "2026-11-28T10:00:00+01:00", None])
def test_times_must_be_strict_utc(conn, now):
    with pytest.raises(TokenError) as caught:
        create(conn, "ci", ["append"], now=now)
    assert caught.value.field == "now"


def test_revoke_by_name_or_by_id(conn):
    _, first = create(conn, "first", ["read"])
    _, second = create(conn, "second", ["read"])
    assert revoke(conn, "first").revoked_at == LATER
    assert revoke(conn, second.id) == type(second)(second.id, "second", second.scopes, NOW, LATER)
    assert [t.revoked_at for t in list_tokens(conn)] == [LATER, LATER]


@pytest.mark.parametrize("target, field", [("nobody", "name"), (999, "id")])
def test_revoking_an_unknown_token_says_so(conn, target, field):
    with pytest.raises(TokenNotFound) as caught:
        revoke(conn, target)
    assert caught.value.field == field


def test_revoking_twice_is_refused(conn):
    create(conn, "ci", ["append"])
    revoke(conn, "ci")
    with pytest.raises(TokenNotFound):
        revoke(conn, "ci")


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_authenticate_accepts_the_secret_and_nothing_else(conn, path):
    secret, info = create(conn, "ci", ["append"])
    auth = TokenAuthenticator(lambda: connect(path, readonly=True))
    assert auth.authenticate(secret) == info
    for wrong in (secret[:-1], secret + "A", secret.upper(), "", "rl_", "x" * 10_000, "rl_é" + secret, None, b"x"):
        assert auth.authenticate(wrong) is None
    auth.close()


def test_revocation_in_another_connection_takes_effect_after_the_ttl(conn, path):
    secret, _ = create(conn, "ci", ["append"])
    clock = FakeClock()
    auth = TokenAuthenticator(lambda: connect(path, readonly=True), ttl=0.5, clock=clock)
    assert auth.authenticate(secret) is not None
    revoke(conn, "ci")
    clock.now += 0.49
    assert auth.authenticate(secret) is not None  # still cached
    clock.now += 0.02
    assert auth.authenticate(secret) is None


def test_invalidate_applies_a_revocation_at_once(conn, path):
    secret, _ = create(conn, "ci", ["append"])
    auth = TokenAuthenticator(lambda: connect(path, readonly=True), clock=FakeClock())
    assert auth.authenticate(secret) is not None
    revoke(conn, "ci")
    auth.invalidate()
    assert auth.authenticate(secret) is None


def test_a_token_created_elsewhere_is_accepted_after_the_ttl(conn, path):
    clock = FakeClock()
    auth = TokenAuthenticator(lambda: connect(path, readonly=True), clock=clock)
    assert auth.authenticate("rl_" + "A" * 43) is None
    secret, info = create(conn, "late", ["read"])
    clock.now += 1
    assert auth.authenticate(secret) == info


def test_with_default_settings_revocation_takes_effect_within_a_second(conn, path):
    secret, _ = create(conn, "ci", ["append"])
    auth = TokenAuthenticator(lambda: connect(path, readonly=True))
    assert auth.authenticate(secret) is not None
    revoke(conn, "ci")
    revoked_at = time.monotonic()
    while auth.authenticate(secret) is not None:
        time.sleep(0.01)
    assert time.monotonic() - revoked_at < 1.0


def test_a_ttl_over_a_second_is_refused(path):
    with pytest.raises(Exception, match="within a second"):
        TokenAuthenticator(lambda: connect(path), ttl=2)


def test_many_threads_authenticate_while_tokens_change(conn, path):
    keep, keep_info = create(conn, "keep", ["read"])
    doomed, _ = create(conn, "doomed", ["append"])
    auth = TokenAuthenticator(lambda: connect(path, readonly=True), ttl=0)  # every call rereads
    revoked = threading.Event()

    def check(_):
        assert auth.authenticate(keep) == keep_info
        seen_revoked = revoked.is_set()
        result = auth.authenticate(doomed)
        if seen_revoked:
            assert result is None
        return result is None

    writer = connect(path)
    with ThreadPoolExecutor(8) as pool:
        first = pool.map(check, range(400))
        revoke(writer, "doomed")
        revoked.set()
        results = list(first) + list(pool.map(check, range(400)))
    assert all(results[400:])
    writer.close()
    auth.close()
