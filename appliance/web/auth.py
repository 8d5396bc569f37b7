"""Bearer-token guards for Litestar routes.

`require_scope("append")` reads `Authorization: Bearer <token>` (RFC 6750 section 2.1), asks
the authenticator on `app.state.tokens` who holds it, and refuses with `Unauthorized` (401) or
`Forbidden` (403). The token's holder is then on the request: `token_of(request)`, or the
`current_token` dependency. `scope_hook("append")` is the same check as a `before_request` hook,
cheaper per request (for `POST /v1/events`). Both run on the event loop, so `authenticate` must
be quick (one indexed lookup of the token's hash, or a cache).

When the app holds a `FailureLimiter` on `app.state.auth_limiter`, an address that presented too
many unknown, revoked or malformed tokens gets 429 with `Retry-After` (appliance.web.rate_limit).
"""

import re
from collections.abc import Awaitable, Callable, Iterable, Set
from typing import Any, Protocol, runtime_checkable

from litestar.connection import ASGIConnection, Request
from litestar.exceptions import TooManyRequestsException
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler

from appliance.core.errors import InvalidInput
from appliance.web.errors import Forbidden, StoreUnavailable, Unauthorized
from appliance.web.rate_limit import FailureLimiter, client_key

SCOPES = frozenset({"append", "read", "export", "admin"})
ADMIN = "admin"
TOKEN_KEY = "runlog.token"
LIMITER_KEY = "auth_limiter"
MAX_TOKEN_CHARS = 1024

_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*) *")


@runtime_checkable
class TokenInfo(Protocol):
    """Who holds a token: its name (the entries' `source`) and scopes; "admin" implies all."""

    @property
    def name(self) -> str: ...

    @property
    def scopes(self) -> Set[str]: ...


class Authenticator(Protocol):
    def authenticate(self, token: str) -> TokenInfo | None:
        """The token's holder, or None when the token is unknown or revoked."""
        ...


Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], None]


def bearer_token(authorization: list[str]) -> str:
    """The token in the request's Authorization header values; raise `Unauthorized` otherwise."""
    if not authorization:
        raise Unauthorized("missing credentials: send Authorization: Bearer <token>")
    if len(authorization) > 1:
        raise Unauthorized("more than one Authorization header")
    value = authorization[0]
    match = _BEARER.fullmatch(value) if len(value) <= MAX_TOKEN_CHARS else None
    if match is None:
        raise Unauthorized("malformed credentials: send Authorization: Bearer <token>")
    return match[1]


def has_scope(token: TokenInfo, scope: str) -> bool:
    return scope in token.scopes or ADMIN in token.scopes


def _check_scope_name(scope: str) -> None:
    if scope not in SCOPES:
        raise InvalidInput(f"unknown scope {scope!r}; scopes are {', '.join(sorted(SCOPES))}", field="scope")


def _authorization(raw_headers: Iterable[tuple[bytes, bytes]]) -> list[str]:
    return [value.decode("latin-1") for name, value in raw_headers if name.lower() == b"authorization"]


def authorize(connection: ASGIConnection[Any, Any, Any, Any], scope: str) -> TokenInfo:
    """Admit the request's bearer if their token holds `scope` (or "admin") and put the holder on
    the connection (`token_of`); otherwise raise 429, 401 or 403 as the module docstring says.

    Precondition: `app.state.tokens` is an `Authenticator` once the app has started.
    """
    # state.get, not getattr: Litestar's State answers attributes from __getattr__, after a failed
    # ordinary lookup has built an AttributeError (~2 µs each).
    state = connection.app.state
    limiter: FailureLimiter | None = state.get(LIMITER_KEY)
    client = client_key(connection.scope)
    if limiter is not None and (wait := limiter.retry_after(client)) is not None:
        raise TooManyRequestsException(f"too many failed authentications from {client}; retry in {wait} s",
                                       headers={"Retry-After": str(wait)})
    authorization = _authorization(connection.scope["headers"])
    try:
        token = bearer_token(authorization)
    except Unauthorized:
        if authorization and limiter is not None:
            limiter.failed(client)
        raise
    authenticator: Authenticator | None = state.get("tokens")
    if authenticator is None:
        raise StoreUnavailable("the token store is not open")
    holder = authenticator.authenticate(token)
    if holder is None:
        if limiter is not None:
            limiter.failed(client)
        raise Unauthorized("unknown or revoked token")
    if not has_scope(holder, scope):
        raise Forbidden(f"token {holder.name!r} lacks the {scope!r} scope")
    connection.scope[TOKEN_KEY] = holder  # type: ignore[literal-required]
    return holder


def admitted(authenticator: Authenticator | None, limiter: FailureLimiter | None, scope: Any,
             required: str) -> TokenInfo | None:
    """The holder `authorize` would admit for `required`, or None for anything it would refuse
    (a blocked address, no or several or malformed credentials, an unknown or revoked token, a
    missing scope). Counts nothing and raises nothing: a caller leaves refusals to `authorize`."""
    if authenticator is None or (limiter is not None and limiter.retry_after(client_key(scope)) is not None):
        return None
    authorization = _authorization(scope["headers"])
    if len(authorization) != 1 or len(authorization[0]) > MAX_TOKEN_CHARS:
        return None
    match = _BEARER.fullmatch(authorization[0])
    holder = authenticator.authenticate(match[1]) if match is not None else None
    return holder if holder is not None and has_scope(holder, required) else None


def require_scope(scope: str) -> Guard:
    """A guard admitting only bearers of a token with `scope` (or "admin"): `authorize`."""
    _check_scope_name(scope)

    # async: Litestar runs a sync guard in a worker thread (a thread hop per request); this one
    # only reads memory, or on a cache miss one indexed row.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        authorize(connection, scope)

    guard.__name__ = f"require_scope_{scope}"
    guard.scope = scope  # type: ignore[attr-defined]  # read by route_scope (appliance.web.openapi)
    return guard


def scope_hook(scope: str) -> Callable[[Request[Any, Any, Any]], Awaitable[None]]:
    """The same check as `require_scope`, as a `before_request` hook, for hot routes: Litestar
    hands every guard call a fresh copy of the route handler (~15 µs per request); a hook is
    called as it is. It runs at the same point (before the handler reads the body)."""
    _check_scope_name(scope)

    async def hook(request: Request[Any, Any, Any]) -> None:
        authorize(request, scope)

    hook.__name__ = f"scope_hook_{scope}"
    hook.scope = scope  # type: ignore[attr-defined]  # read by route_scope (appliance.web.openapi)
    return hook


def route_scope(handler: BaseRouteHandler) -> str | None:
    """The scope a route handler's `require_scope` guard or `scope_hook` demands (its own or its
    controller's), or None."""
    hook = handler.resolve_before_request() if isinstance(handler, HTTPRouteHandler) else None
    for check in (*handler.resolve_guards(), *([hook] if hook else [])):
        scope = getattr(getattr(check, "func", check), "scope", None)  # Litestar wraps sync callables in AsyncCallable
        if scope in SCOPES:
            return scope
    return None


def token_of(connection: ASGIConnection[Any, Any, Any, Any]) -> TokenInfo:
    """The holder `require_scope` admitted; raise `Unauthorized` on a route without the guard."""
    holder = connection.scope.get(TOKEN_KEY)
    if holder is None:
        raise Unauthorized("this route did not authenticate the request")
    return holder  # type: ignore[no-any-return]


async def current_token(request: Request[Any, Any, Any]) -> TokenInfo:
    """Litestar dependency: `dependencies={"token": Provide(current_token)}`, then a handler
    parameter `token: NamedDependency[TokenInfo]`."""
    return token_of(request)
