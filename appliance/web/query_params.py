"""Query parameters a route does not take are refused with a 400 naming them, instead of being
ignored: `GET /v1/runs?staus=failed` would otherwise list every run as if they had been filtered.
The names each route takes are read from the app's own OpenAPI document, so that what is checked
and what is documented are the same list."""

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from appliance.core.errors import InvalidInput

_STATE_KEY = "query_parameters"  # on app.state: {OpenAPI path: the query parameters its GET takes}


def refuse_unknown_query_parameters(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """An app-wide guard: a GET of the API (/v1/...) with a query parameter its route does not
    document is refused (`InvalidInput`, 400), before authentication. /healthz and /metrics stay
    lenient: a probe or scraper configured with a parameter must not make the appliance unhealthy."""
    scope = connection.scope
    template = scope.get("path_template", "")
    if scope["method"] != "GET" or not scope.get("query_string") or not template.startswith("/v1/"):
        return
    allowed = _documented(connection.app).get(template)
    if allowed is None:
        return
    unknown = sorted(set(connection.query_params) - allowed)
    if unknown:
        takes = f"it takes {', '.join(sorted(allowed))}" if allowed else "it takes none"
        raise InvalidInput(f"{unknown[0]}: not a query parameter of {template}; {takes}",
                           field=unknown[0])


def _documented(app: Any) -> dict[str, frozenset[str]]:
    found = app.state.get(_STATE_KEY)
    if found is None:
        found = {}
        for path, item in (app.openapi_schema.paths or {}).items():
            operation = item.get
            if operation is not None:
                found[path] = frozenset(parameter.name for parameter in operation.parameters or []
                                        if str(getattr(parameter, "param_in", "")).lower().endswith("query"))
        app.state[_STATE_KEY] = found
    return found
