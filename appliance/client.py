"""A small Python client for producers: start runs, record steps, pass `traceparent` along.

    client = RunlogClient("http://127.0.0.1:8080", token)
    run = client.start_run("nightly-export")
    ctx = client.record(run.traceparent, "download", "succeeded", attrs={"rows": 120})
    client.record(ctx, "upload", "succeeded", final=True)

Each `record` creates a new span for the step (its `span_id`), links it to the caller's span
(`parent_id` = the incoming traceparent's parent-id) and returns the traceparent to hand to the
next step. Retries are safe: every call carries an Idempotency-Key.
"""

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


class RunlogClient:
    def __init__(self, url: str, token: str, *, timeout: float = 10.0, retries: int = 3,
                 transport: httpx.BaseTransport | None = None) -> None:
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
        last: Exception | None = None
        for _ in range(self._retries):
            try:
                response = self._http.request(method, path, **kwargs)
            except httpx.TransportError as error:  # safe to retry: the Idempotency-Key dedupes
                last = error
                continue
            if response.status_code == 503:
                last = ClientError(503, response.json().get("error", {}))
                continue
            if response.status_code >= 400:
                try:
                    error = response.json().get("error", {})
                except ValueError:
                    error = {"message": response.text}
                raise ClientError(response.status_code, error)
            return response.json()
        assert last is not None
        raise last

    def start_run(self, step: str = "run", *, attrs: dict[str, Any] | None = None) -> StepResult:
        body = {"step": step, "attrs": attrs or {}}
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
