"""The Litestar application: `create_app(settings)` opens the appliance in the lifespan and puts
it on `app.state`; routes live in one module per resource and hold no business logic."""

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig

from appliance import __version__
from appliance.service import Appliance, init_appliance, open_appliance
from appliance.settings import Settings
from appliance.web.client_limits import BodyDeadline
from appliance.web.errors import EXCEPTION_HANDLERS
from appliance.web.fast_ingest import FastIngest
from appliance.web.instruments import Instruments
from appliance.web.openapi import complete_openapi
from appliance.web.query_params import refuse_unknown_query_parameters
from appliance.web.rate_limit import FailureLimiter
from appliance.web.routes_checkpoints import CheckpointsController
from appliance.web.routes_export import ExportController, download
from appliance.web.routes_ingest import EventsController
from appliance.web.routes_metrics import metrics
from appliance.web.routes_read import EntriesController, ProofsController, health, keys
from appliance.web.request_log import RequestLog
from appliance.web.routes_runs import RunsController
from appliance.web.routes_slack import SLACK_ROUTES, slack_lifespan


@asynccontextmanager
async def _given(appliance: Appliance) -> AsyncIterator[Appliance]:
    yield appliance


@asynccontextmanager
async def _owned(settings: Settings) -> AsyncIterator[Appliance]:
    init_appliance(settings)
    opened = open_appliance(settings)
    try:
        yield opened
    finally:
        opened.close()


def create_app(settings: Settings, *, appliance: Appliance | None = None,
               opener: Callable[[], AbstractAsyncContextManager[Appliance]] | None = None,
               instruments: Instruments | None = None, limiter: FailureLimiter | None = None) -> Litestar:
    """The app; it opens (and closes) its own appliance unless one is given, or an `opener` (an HTTP
    worker process's: see appliance.workers) opens it."""
    instruments = instruments if instruments is not None else Instruments()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        source = _given(appliance) if appliance is not None else opener() if opener is not None else _owned(settings)
        async with source as opened:
            app.state.appliance = opened
            app.state.tokens = opened.tokens
            opened.writer.on_commit = instruments.observe_commit
            yield

    app = Litestar(
        route_handlers=[EventsController, RunsController, EntriesController, ProofsController, CheckpointsController,
                        ExportController, download,
                        keys, health, metrics, *SLACK_ROUTES],
        lifespan=[lifespan, slack_lifespan],
        exception_handlers=EXCEPTION_HANDLERS,
        guards=[refuse_unknown_query_parameters],
        request_max_body_size=settings.max_body_bytes,
        middleware=[DefineMiddleware(BodyDeadline, seconds=settings.body_timeout)],
        openapi_config=OpenAPIConfig(title="runlog", version=__version__, path="/schema"),
        debug=False,
    )
    app.state.auth_limiter = limiter if limiter is not None else FailureLimiter(settings.auth_failure_burst,
                                                                                settings.auth_failure_refill)
    complete_openapi(app)
    app.state.instruments = instruments
    # Around the router: 404s are logged too; the ingest fast path in front of Litestar's routing.
    app.asgi_handler = RequestLog(FastIngest(app.asgi_handler, app.state, settings.body_timeout), instruments)
    return app
