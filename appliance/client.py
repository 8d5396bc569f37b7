"""A small Python client for producers: start runs, record steps, pass `traceparent` along.

    client = RunlogClient("http://127.0.0.1:8080", token)
    run = client.start_run("nightly-export")
    ctx = client.record(run.traceparent, "download", "succeeded", attrs={"rows": 120})
    client.record(ctx, "upload", "succeeded", final=True)

Each `record` creates a new span for the step (its `span_id`), links it to the caller's span
(`parent_id` = the incoming traceparent's parent-id) and returns the traceparent to hand to the
next step. Retries are safe: every call carries an Idempotency-Key.
"""

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from appliance.core.tracecontext import TraceParent, generate_parent_id


class ClientError(Exception):
    """The appliance refused a request; `status` and `error` are from its JSON error body."""

    def __init__(self, status: int, error: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {error.get('message', error)}")
        self.status = status
        self.error = error


@dataclass(frozen=True)
class StepResult:
    traceparent: str
    receipt: dict[str, Any]

    def __str__(self) -> str:
        return self.traceparent


# Answers that say "not now": the request did not happen (a proxy's 502/504 may hide one that
# did, which the Idempotency-Key then answers with its original receipt).
_RETRY_STATUSES = frozenset({502, 503, 504})
MAX_RETRY_WAIT = 30.0  # seconds: a Retry-After beyond this is waited only this long


class RunlogClient:
    """`retries` is the number of attempts per call: a connection error or a 502/503/504 answer is
    tried again after a wait (the answer's Retry-After seconds, else 0.2 s doubling), with the same
    Idempotency-Key, so a retried append is stored once. Other errors raise `ClientError` at once."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0, retries: int = 3,
                 transport: httpx.BaseTransport | None = None) -> None:
        if type(retries) is not int or retries < 1:
            raise ValueError(f"retries must be a whole number of attempts >= 1, got {retries!r}")
        self._http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, transport=transport,
                                  headers={"Authorization": f"Bearer {token}"})
        self._retries = retries

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "RunlogClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        for attempt in range(self._retries):
            last = attempt == self._retries - 1
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError:  # safe to retry: the Idempotency-Key dedupes
                if last:
                    raise
                time.sleep(_backoff(attempt))
                continue
            if response.status_code in _RETRY_STATUSES and not last:
                time.sleep(_retry_after(response) or _backoff(attempt))
                continue
            if response.status_code >= 400:
                raise ClientError(response.status_code, _error_of(response))
            try:
                return response.json()
            except ValueError:
                error = {"message": f"the answer is not JSON: {response.text[:200]!r}"}
            raise ClientError(response.status_code, error)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def start_run(self, step: str = "run", *, attrs: dict[str, Any] | None = None, ts: str | None = None) -> StepResult:
        """Start a run (`POST /v1/runs`): the appliance mints its trace ID and records its `started`
        step; `ts` is the producer's time of it (RFC 3339), else the appliance's."""
        body: dict[str, Any] = {"step": step, "attrs": attrs or {}}
        if ts is not None:
            body["ts"] = ts
        data = self._request("POST", "/v1/runs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        return StepResult(data["traceparent"], data)

    def record(self, traceparent: str | StepResult, step: str, status: str, *, attrs: dict[str, Any] | None = None,
               final: bool = False, ts: str | None = None) -> StepResult:
        incoming = TraceParent.from_header(str(traceparent))
        span_id = generate_parent_id()
        event: dict[str, Any] = {"step": step, "status": status, "attrs": attrs or {}, "span_id": span_id,
                                 "parent_id": incoming.parent_id}
        if final:
            event["final"] = True
        if ts is not None:
            event["ts"] = ts
        data = self._request("POST", "/v1/events", json=event,
                             headers={"traceparent": incoming.to_header(), "Idempotency-Key": uuid.uuid4().hex})
        next_context = TraceParent(0, incoming.trace_id, span_id, incoming.flags)
        return StepResult(next_context.to_header(), data)

    def get_run(self, trace_id: str) -> dict[str, Any]:
        return self._request("GET", f"/v1/runs/{trace_id}")

    def list_runs(self, **filters: Any) -> dict[str, Any]:
        return self._request("GET", "/v1/runs", params={k: v for k, v in filters.items() if v is not None})


def _backoff(attempt: int) -> float:
    return min(MAX_RETRY_WAIT, 0.2 * 2 ** attempt)


def _retry_after(response: httpx.Response) -> float | None:
    """The answer's Retry-After in seconds (the delay form; an HTTP date is not used), capped."""
    text = response.headers.get("retry-after", "").strip()
    return min(MAX_RETRY_WAIT, float(text)) if text.isdigit() else None


def _error_of(response: httpx.Response) -> dict[str, Any]:
    """The appliance's JSON `error` object, or the text of an answer that has none (a proxy's page)."""
    try:
        body = response.json()
    except ValueError:
        return {"message": response.text[:200] or response.reason_phrase}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {"message": str(body)[:200]}
