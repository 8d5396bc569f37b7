"""Bearer-token guards for Litestar routes.

`require_scope("append")` reads `Authorization: Bearer <token>` (RFC 6750 section 2.1), asks
the authenticator on `app.state.tokens` who holds it, and refuses with `Unauthorized` (401) or
`Forbidden` (403). The token's holder is then on the request: `token_of(request)`, or the
`current_token` dependency. The guard runs on the event loop, so `authenticate` must be quick
(one indexed lookup of the token's hash, or a cache).

When the app holds a `FailureLimiter` on `app.state.auth_limiter`, an address that presented too
many unknown, revoked or malformed tokens gets 429 with `Retry-After` (appliance.web.rate_limit).
"""

import re
from collections.abc import Callable, Set
from typing import Any, Protocol, runtime_checkable

from litestar.connection import ASGIConnection, Request
from litestar.exceptions import TooManyRequestsException
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


def require_scope(scope: str) -> Guard:
    """A guard admitting only bearers of a token with `scope` (or "admin").

    Precondition: `app.state.tokens` is an `Authenticator` once the app has started.
    """
    if scope not in SCOPES:
        raise InvalidInput(f"unknown scope {scope!r}; scopes are {', '.join(sorted(SCOPES))}", field="scope")

    # async: Litestar runs a sync guard in a worker thread (a thread hop per request); this one
    # only reads memory, or on a cache miss one indexed row.
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        limiter: FailureLimiter | None = getattr(connection.app.state, LIMITER_KEY, None)
        client = client_key(connection.scope)
        if limiter is not None and (wait := limiter.retry_after(client)) is not None:
            raise TooManyRequestsException(f"too many failed authentications from {client}; retry in {wait} s",
                                           headers={"Retry-After": str(wait)})
        authorization = connection.headers.getall("authorization", [])
        try:
            token = bearer_token(authorization)
        except Unauthorized:
            if authorization and limiter is not None:
                limiter.failed(client)
            raise
        authenticator: Authenticator | None = getattr(connection.app.state, "tokens", None)
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

    guard.__name__ = f"require_scope_{scope}"
    guard.scope = scope  # type: ignore[attr-defined]  # read by appliance.web.openapi and route_scope
    return guard


def route_scope(handler: BaseRouteHandler) -> str | None:
    """The scope a route handler's `require_scope` guard demands (its own or its controller's), or None."""
    for guard in handler.resolve_guards():
        scope = getattr(getattr(guard, "func", guard), "scope", None)  # Litestar wraps guards in AsyncCallable
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
