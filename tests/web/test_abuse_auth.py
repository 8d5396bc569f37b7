"""Token guessing: the failed-authentication limiter (appliance.web.rate_limit) on its own with a
hand-driven clock, and through the real app, where a guesser gets 429 with Retry-After (even
for a valid token), others are not affected, and the lock lifts by itself.

That guessing gets no timing signal is shown with measurements, not asserted here: see
`python -m reliability.auth_timing` and its figures in docs/RELIABILITY.md."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from appliance.core.errors import InvalidInput
from appliance.settings import Settings, SettingsError
from appliance.store.db import connect
from appliance.store.tokens import create_token
from appliance.web.app import create_app
from appliance.web.rate_limit import FailureLimiter, client_key
from tests.fuzz import examples

ADMIN = "admin-token-for-limiter-tests-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_one_more_try_per_refill():
    clock = Clock()
    limiter = FailureLimiter(burst=3, refill_seconds=10, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("a") is None
        limiter.failed("a")
    assert limiter.retry_after("a") == 10
    clock.now += 9.5
    assert limiter.retry_after("a") == 1
    clock.now += 0.5
    assert limiter.retry_after("a") is None
    limiter.failed("a")
    assert limiter.retry_after("a") == 10


def test_the_wait_is_bounded_however_long_the_attack():
    clock = Clock()
    limiter = FailureLimiter(burst=5, refill_seconds=2, clock=clock)
    for _ in range(1000):
        limiter.failed("a")
    assert limiter.retry_after("a") == 4  # at most two refills
    clock.now += 4
    assert limiter.retry_after("a") is None


def test_addresses_are_counted_apart_and_memory_is_bounded():
    limiter = FailureLimiter(burst=1, refill_seconds=60, max_clients=100, clock=Clock())
    limiter.failed("a")
    assert limiter.retry_after("a") is not None and limiter.retry_after("b") is None
    for n in range(1000):
        limiter.failed(f"guesser-{n}")
    assert limiter.tracked() == 100
    assert limiter.retry_after("a") is None  # forgotten: the least recently failing go first


@pytest.mark.parametrize("client, key", [
    (("203.0.113.7", 5000), "203.0.113.7"),
    (("2001:db8:1:2:3:4:5:6", 5000), "2001:db8:1:2::/64"),
    (("2001:db8:1:2:ffff::1", 1), "2001:db8:1:2::/64"),
    (("::ffff:203.0.113.7", 5000), "203.0.113.7"),
    (("testclient", 50000), "testclient"),
    (None, "unknown"),
])
def test_client_key_groups_an_ipv6_host_by_its_64(client, key):
    assert client_key({"client": client}) == key


@pytest.mark.parametrize("options", [{"burst": 0}, {"burst": True}, {"refill_seconds": 0},
                                     {"refill_seconds": float("nan")}, {"max_clients": 0}])
def test_bad_limits_are_refused(options):
    with pytest.raises(InvalidInput):
        FailureLimiter(**options)


@pytest.mark.parametrize("env", [{"RUNLOG_TRUSTED_PROXIES": "10.0.0.1, nonsense"},
                                 {"RUNLOG_AUTH_FAILURE_BURST": "0"}, {"RUNLOG_AUTH_FAILURE_REFILL": "-1"},
                                 {"RUNLOG_MAX_HEADER_BYTES": "10"}, {"RUNLOG_BODY_TIMEOUT": "0"},
                                 {"RUNLOG_HEADER_TIMEOUT": "x"}, {"RUNLOG_HTTP_PARSER": "curl"}])
def test_bad_limit_settings_name_the_variable(env):
    with pytest.raises(SettingsError) as refused:
        Settings.from_env(env)
    assert refused.value.variable.startswith(next(iter(env)))


@settings(max_examples=examples(200))
@given(st.lists(st.tuples(st.sampled_from(["fail", "ask", "wait"]), st.sampled_from("abc"),
                          st.floats(0, 30, allow_nan=False)), max_size=60))
def test_never_more_than_burst_plus_the_refills_get_through(steps):
    """Whatever the interleaving, an address gets at most burst + elapsed/refill failures in."""
    clock = Clock()
    limiter = FailureLimiter(burst=4, refill_seconds=5, clock=clock)
    admitted = {key: 0 for key in "abc"}
    start = clock.now
    for action, key, seconds in steps:
        if action == "wait":
            clock.now += seconds
        elif action == "fail" and limiter.retry_after(key) is None:
            admitted[key] += 1
            limiter.failed(key)
        elif action == "ask":
            wait = limiter.retry_after(key)
            assert wait is None or 1 <= wait <= 10
    for count in admitted.values():
        assert count <= 4 + (clock.now - start) / 5 + 1


@pytest.fixture
def app_client(tmp_path):
    settings = Settings.from_env({"RUNLOG_DATA_DIR": str(tmp_path), "RUNLOG_ADMIN_TOKEN": ADMIN,
                                  "RUNLOG_AUTH_FAILURE_BURST": "5", "RUNLOG_AUTH_FAILURE_REFILL": "30"})
    with TestClient(create_app(settings)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_guesser_gets_429_with_retry_after_even_for_a_good_token(app_client):
    for n in range(5):
        assert app_client.get("/v1/runs", headers=bearer(f"rl_guess{n:040d}")).status_code == 401
    refused = app_client.get("/v1/runs", headers=bearer(ADMIN))
    assert refused.status_code == 429
    assert refused.json()["error"]["code"] == "too_many_requests"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert app_client.get("/v1/runs", headers=bearer("rl_another-guess-000000000000000")).status_code == 429
    assert app_client.get("/healthz").status_code == 200  # public routes stay open


def test_malformed_credentials_count_and_missing_ones_do_not(app_client):
    for _ in range(20):
        assert app_client.get("/v1/runs").status_code == 401
    assert app_client.get("/v1/runs", headers=bearer(ADMIN)).status_code == 200
    for _ in range(5):
        assert app_client.get("/v1/runs", headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    assert app_client.get("/v1/runs", headers=bearer(ADMIN)).status_code == 429


def test_a_missing_scope_is_not_a_guess(app_client, tmp_path):
    conn = connect(tmp_path / "runlog.sqlite")
    conn.execute("BEGIN IMMEDIATE")
    reader, _ = create_token(conn, "reader", ["read"], now="2026-11-28T00:00:00Z")
    conn.execute("COMMIT")
    for _ in range(10):
        assert app_client.post("/v1/runs", json={}, headers=bearer(reader)).status_code == 403
    assert app_client.app.state.auth_limiter.tracked() == 0
    assert app_client.get("/v1/runs", headers=bearer(reader)).status_code == 200


def test_the_lock_lifts_by_itself(app_client):
    limiter: FailureLimiter = app_client.app.state.auth_limiter
    clock = Clock()
    limiter.clock = clock
    for n in range(5):
        app_client.get("/v1/runs", headers=bearer(f"rl_guess{n:040d}"))
    assert app_client.get("/v1/runs", headers=bearer(ADMIN)).status_code == 429
    clock.now += 30
    assert app_client.get("/v1/runs", headers=bearer(ADMIN)).status_code == 200
