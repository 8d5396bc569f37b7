"""The JSON log format and its second line of defence: a record that carries a secret (a configured
one, or anything shaped like a bearer credential, a runlog or Slack token, a private key) is
written redacted; request lines name a trace ID only when it is well formed."""

import io
import json
import logging

import pytest

from appliance.logs import REDACTED, configure_logging, log_request, secrets_of, timestamp
from appliance.settings import Settings
from appliance.web.request_log import trace_id_of

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.fixture
def captured():
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging(secrets=["configured-secret-value-123", "postgresql://u:pw@db/x"], stream=stream)
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])
    import appliance.logs

    appliance.logs._request_handler = None


def records(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.parametrize("leak", [
    "Authorization: Bearer abc.def-ghi_jkl~123+/=",
    "authorization: bearer abc.def-ghi_jkl~123+/=",
    "token rl_Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5",
    "bot xoxb-1234567890-abcdefghij",
    "key PRIVATE+KEY+localhost/runlog+a97fc207+AUVq0Z5k3yFQ0vJm5Q8Lx1kq0ex",
    "env configured-secret-value-123",
    "dsn postgresql://u:pw@db/x refused",
])
def test_a_secret_in_a_log_record_is_redacted(captured, leak):
    logging.getLogger("runlog.anything").warning("failed: %s", leak)
    try:
        raise RuntimeError(leak)
    except RuntimeError:
        logging.getLogger("runlog.anything").exception("with a traceback")
    text = captured.getvalue()
    secret = leak.split(" ", 1)[1].split(" ")[0] if not leak.startswith("Authorization") else "abc.def-ghi_jkl~123"
    assert secret not in text and REDACTED in text
    assert all(r["level"] in ("warning", "error") for r in records(captured))


def test_lines_are_json_with_fields_merged(captured):
    logging.getLogger("runlog.service").info("stopped", extra={"fields": {"entries": 3, "anchors": []}})
    log_request({"method": "GET", "route": "/healthz", "status": 200, "ms": 0.5})
    first, second = records(captured)
    assert first["msg"] == "stopped" and first["entries"] == 3 and first["logger"] == "runlog.service"
    assert second == {"ts": second["ts"], "level": "info", "logger": "runlog.request", "msg": "request",
                      "method": "GET", "route": "/healthz", "status": 200, "ms": 0.5}
    assert first["ts"].endswith("Z") and len(first["ts"]) == len("2026-11-28T10:00:00.000Z")


def test_timestamps_are_utc_with_milliseconds():
    assert timestamp(1_764_324_000.0) == "2025-11-28T10:00:00.000Z"
    assert timestamp(1_764_324_000.9996) == "2025-11-28T10:00:00.999Z"
    assert timestamp(1_764_324_001.25) == "2025-11-28T10:00:01.250Z"


def test_the_secret_settings_are_the_ones_kept_out_of_repr():
    settings = Settings.from_env({"RUNLOG_ADMIN_TOKEN": "admin-token-for-logs-0123456789abc",
                                  "RUNLOG_SLACK_SIGNING_SECRET": "slack-signing-secret-x",
                                  "RUNLOG_SLACK_BOT_TOKEN": "xoxb-bot-token-x"})
    assert {"admin-token-for-logs-0123456789abc", "slack-signing-secret-x", "xoxb-bot-token-x"} <= set(
        secrets_of(settings))


@pytest.mark.parametrize("headers, path_params, expected", [
    ([(b"traceparent", f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode())], {}, TRACE_ID),
    ([(b"x-amzn-trace-id", b"Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1")], {},
     "5759e988bd862e3fe1be46a994272793"),
    ([], {"trace_id": TRACE_ID}, TRACE_ID),
    ([(b"traceparent", b"00-" + b"G" * 32 + b"-00f067aa0ba902b7-01")], {}, None),
    ([(b"traceparent", b'00-4bf92f3577b34da6a3ce929d0e0e47"}\n-00f067aa0ba902b7-01')], {}, None),
    ([(b"x-amzn-trace-id", b"Root=1-5759e988-bd86;Sampled=1")], {}, None),
    ([], {"trace_id": '"}{"injected":1'}, None),
    ([(b"authorization", b"Bearer " + TRACE_ID.encode())], {}, None),
])
def test_only_well_formed_trace_ids_reach_the_request_line(headers, path_params, expected):
    assert trace_id_of({"headers": headers, "path_params": path_params}) == expected
