"""Structured logs for `runlog serve`: one JSON object per line on stderr, for every logger
(ours, uvicorn's, Litestar's).

A line is `{"ts", "level", "logger", "msg", ...fields}`; a record's `fields` (passed as
`extra={"fields": {...}}`) are merged in. Nothing secret is ever passed to a logger on purpose;
as a second line of defence every line but the request lines (built from safe values only) is
scrubbed of the configured secrets and of anything shaped like a credential before it is written.

Request lines are on the ingest path, so `log_request` writes them straight to the configured
stream under the handler's lock: a LogRecord and the formatter would double their cost
(bench/request_log.py).
"""

import logging
import re
import sys
import time
from collections.abc import Iterable
from dataclasses import fields
from typing import IO, Any

import orjson

from appliance.settings import Settings

REDACTED = "[redacted]"
REQUEST_LOGGER = "runlog.request"
# Their INFO lines carry URLs, and some URLs are credentials (a Slack response_url, a presigned link).
QUIET_LIBRARIES = ("httpx", "httpcore", "botocore", "boto3", "urllib3", "s3transfer")
# A bearer credential, a runlog token, a Slack token, a private key's text (keyfile format).
_CREDENTIAL = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9\-._~+/]+=*|\brl_[A-Za-z0-9_\-]{8,}"
                         r"|\bxox[a-z]-[A-Za-z0-9\-]+|PRIVATE\+KEY\+\S+")
_CREDENTIAL_HINTS = ("earer", "EARER", "rl_", "xox", "PRIVATE+KEY+")

_request_handler: logging.StreamHandler | None = None
_second: tuple[int, str] = (-1, "")


def timestamp(seconds: float) -> str:
    """RFC 3339 UTC with milliseconds; the part up to the second is formatted once per second."""
    global _second
    whole = int(seconds)
    cached, prefix = _second
    if whole != cached:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
        _second = (whole, prefix)
    return f"{prefix}.{int((seconds - whole) * 1000):03d}Z"


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; scrubs `secrets` (exact strings) and credential shapes
    from every line except the request log's."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"ts": timestamp(record.created), "level": record.levelname.lower(),
                                "logger": record.name, "msg": record.getMessage()}
        extra = getattr(record, "fields", None)
        if extra:
            data.update(extra)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        if record.name != REQUEST_LOGGER:
            data = self._scrubbed(data)  # the values, before JSON escaping could hide a secret's bytes
        return orjson.dumps(data, default=str).decode()

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        if any(hint in text for hint in _CREDENTIAL_HINTS):
            text = _CREDENTIAL.sub(REDACTED, text)
        return text

    def _scrubbed(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {key: self._scrubbed(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._scrubbed(item) for item in value]
        return value if value is None or isinstance(value, (bool, int, float)) else self.scrub(str(value))


def log_request(fields: dict[str, Any]) -> None:
    """One request line: to the stream `configure_logging` set up, else through the logger."""
    log_requests([fields])


def log_requests(many: list[dict[str, Any]]) -> None:
    """Request lines, written to the stream in one write (one system call) when they fit its buffer."""
    handler = _request_handler
    if handler is None:
        for line in many:
            logging.getLogger(REQUEST_LOGGER).info("request", extra={"fields": line})
        return
    ts = timestamp(time.time())
    text = "".join([orjson.dumps({"ts": ts, "level": "info", "logger": REQUEST_LOGGER, "msg": "request",
                                  **fields}).decode() + "\n" for fields in many])
    handler.acquire()
    try:
        handler.stream.write(text)
        handler.stream.flush()
    except (OSError, ValueError):  # stderr closed or gone: never fail a request over its log line
        pass
    finally:
        handler.release()


def configure_logging(*, secrets: Iterable[str] = (), level: int = logging.INFO,
                      stream: IO[str] | None = None) -> None:
    """Send every logger's records at `level` and above to `stream` (stderr) as JSON lines,
    replacing whatever handlers the root logger had."""
    global _request_handler
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    litestar = logging.getLogger("litestar")  # Litestar gives its logger a text handler of its own
    for old in list(litestar.handlers):
        litestar.removeHandler(old)
    litestar.propagate = True
    _request_handler = handler


def secrets_of(settings: Settings) -> list[str]:
    """The secret settings' values (the fields kept out of `repr`), for `configure_logging`."""
    return [value for f in fields(settings) if not f.repr and isinstance(value := getattr(settings, f.name), str)]
