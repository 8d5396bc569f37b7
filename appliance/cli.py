"""The `runlog` command: thin wrappers over the library. Results go to stdout (so
`TOKEN=$(runlog token create ci --scopes append)` works), messages to stderr."""

import argparse
import json
import logging
import os
import signal
import sys
from datetime import datetime, timezone
from typing import Any

from appliance import __version__
from appliance.commands import anchors as anchors_commands
from appliance.commands import backup as backup_command
from appliance.commands import checkpoint as checkpoint_command
from appliance.commands import export as export_command
from appliance.commands import keys as keys_command
from appliance.commands import verify as verify_command
from appliance.core.errors import RunlogError

GRACEFUL_SHUTDOWN_SECONDS = 5  # for requests in flight at SIGTERM


def _settings():
    from appliance.settings import Settings

    return Settings.from_env()


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def _now() -> str:
    from appliance.core.timefmt import format_utc

    return format_utc(datetime.now(timezone.utc))


def _demo(args: argparse.Namespace) -> int:
    from appliance.demo import run_demo

    run_demo()
    return 0


def _init(args: argparse.Namespace) -> int:
    from appliance.service import init_appliance

    settings = _settings()
    result = init_appliance(settings)
    _say(f"runlog store at {settings.db_path}, keys in {settings.keys_dir}")
    if result.admin_token:
        _say("admin token (shown once; keep it in a secret store):")
        print(result.admin_token)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from appliance.listen import bind_sockets
    from appliance.service import init_appliance

    settings = _settings()
    result = init_appliance(settings)
    if result.admin_token:
        _say(f"admin token (shown once; keep it in a secret store): {result.admin_token}")
    sockets = bind_sockets(settings.host, settings.port, settings.workers)
    try:
        if settings.workers > 1:
            return _serve_with_workers(settings, sockets)
        return _serve_in_one_process(settings, sockets)
    finally:
        for sock in sockets:
            sock.close()


def one_process_app(settings):
    """The app `runlog serve` runs with RUNLOG_WORKERS=1: what start-up built (the store opened by
    the lifespan included) is then kept out of the garbage collector, as in the worker processes."""
    from appliance.web.app import create_app
    from appliance.workers.frozen import freeze_startup_objects

    app = create_app(settings)
    app.on_startup.append(freeze_startup_objects)  # Litestar runs these after the lifespan managers
    return app


def _serve_in_one_process(settings, sockets) -> int:
    import uvicorn

    from appliance.logs import configure_logging, secrets_of
    from appliance.web.client_limits import server_options

    app = one_process_app(settings)
    configure_logging(secrets=secrets_of(settings))  # after create_app: building the app configures logging too
    _log_serving(settings)
    # log_config=None: uvicorn's own lines go through the JSON handler; no access log (one line per
    # request comes from appliance.web.request_log). The graceful timeout plus the shutdown's
    # anchoring budget (service.SHUTDOWN_ANCHOR_SECONDS) stay below Docker's 10 s stop timeout.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, access_log=False, log_config=None,
                            log_level="warning", lifespan="on", **server_options(settings), timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT (the lifespan drains the writer), then re-raises
    # the signal with the handler that was installed before it: make that a clean exit, status 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _exit_cleanly)
    uvicorn.Server(config).run(sockets=sockets)
    return 0


def _log_serving(settings) -> None:
    logging.getLogger("runlog.serve").info("serving", extra={"fields": {
        "version": __version__, "origin": settings.origin, "url": settings.public_url, "store": str(settings.db_path),
        "workers": settings.workers}})


def _serve_with_workers(settings, sockets) -> int:
    from appliance.logs import configure_logging, secrets_of
    from appliance.service import open_appliance
    from appliance.workers.supervisor import serve_with_workers

    configure_logging(secrets=secrets_of(settings))
    appliance = open_appliance(settings)
    _log_serving(settings)
    serve_with_workers(settings, appliance, sockets, GRACEFUL_SHUTDOWN_SECONDS)
    return 0


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _store_write():
    from appliance.store.db import connect, migrate

    settings = _settings()
    conn = connect(settings.db_path, synchronous=settings.synchronous)
    migrate(conn)
    return conn


def _token(args: argparse.Namespace) -> int:
    from appliance.store.tokens import create_token, list_tokens, parse_scopes, revoke_token

    conn = _store_write()
    if args.token_command == "list":
        for token in list_tokens(conn):
            state = f"revoked {token.revoked_at}" if token.revoked_at else "active"
            print(f"{token.id}\t{token.name}\t{','.join(sorted(token.scopes))}\t{token.created_at}\t{state}")
        return 0
    conn.execute("BEGIN IMMEDIATE")
    try:
        if args.token_command == "create":
            secret, info = create_token(conn, args.name, parse_scopes(args.scopes), now=_now())
        else:
            info = revoke_token(conn, args.name, now=_now())
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    if args.token_command == "create":
        _say(f"token {info.name!r} with scopes {','.join(sorted(info.scopes))} (shown once):")
        print(secret)
    else:
        _say(f"token {info.name!r} revoked")
    return 0


def _runs(args: argparse.Namespace) -> int:
    from appliance.store import runs
    from appliance.store.db import connect

    conn = connect(_settings().db_path, readonly=True)
    if args.runs_command == "list":
        page = runs.list_runs(conn, status=args.status, source=args.source, since=args.since, until=args.until,
                              limit=args.limit)
        for run in page.runs:
            print(f"{run.trace_id}\t{run.status}\t{run.steps} steps\t{run.started_at}\t{run.source}")
        return 0
    summary = runs.get_run(conn, args.trace_id)
    if summary is None:
        _say(f"no run with trace_id {args.trace_id}")
        return 1
    print(f"run {summary.trace_id}: {summary.status}, {summary.steps} steps, {summary.duration_seconds:.3f} s")
    after = -1
    while page := runs.run_events(conn, args.trace_id, after_run_seq=after, limit=runs.MAX_EVENTS_PAGE):
        for event in page:
            attrs = json.dumps(event.attrs, ensure_ascii=False) if event.attrs else ""
            print(f"{event.run_seq:>5} seq {event.seq:<8} {event.received_at}  {event.status:<9} {event.step} {attrs}")
        after = page[-1].run_seq
    return 0


def _emit_attrs(strings: list[str], values: list[str]) -> dict[str, Any]:
    """`--attr KEY=TEXT` and `--json-attr KEY=JSON` as one attrs object; raises ValueError."""
    attrs: dict[str, Any] = {}
    for option, pairs in (("--attr", strings), ("--json-attr", values)):
        for pair in pairs:
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ValueError(f"{option} takes KEY={'VALUE' if option == '--attr' else 'JSON'}, got {pair!r}")
            if key in attrs:
                raise ValueError(f"attribute {key!r} is given twice")
            if option == "--json-attr":
                try:
                    attrs[key] = json.loads(value)
                except ValueError:
                    raise ValueError(f"--json-attr {key}: {value!r} is not JSON (quote text, or use --attr)") from None
            else:
                attrs[key] = value
    return attrs


def _emit(args: argparse.Namespace) -> int:
    from appliance.client import RunlogClient

    url, token = os.environ.get("RUNLOG_URL", "http://127.0.0.1:8080"), os.environ.get("RUNLOG_TOKEN")
    if not token:
        _say("runlog emit: set RUNLOG_TOKEN to a token with the append scope")
        return 2
    try:
        attrs = _emit_attrs(args.attr, args.json_attr)
    except ValueError as error:
        _say(f"runlog emit: {error}")
        return 2
    traceparent = os.environ.get("TRACEPARENT")
    if traceparent:
        from appliance.core.tracecontext import TraceParent

        try:
            TraceParent.from_header(traceparent)
        except RunlogError as error:
            _say(f"runlog emit: TRACEPARENT: {error}")
            return 2
    import httpx

    from appliance.client import ClientError

    try:
        with RunlogClient(url, token) as client:
            if not traceparent:
                started = client.start_run(args.step, attrs=attrs)
                if args.status in (None, "started") and not args.final:
                    print(started.traceparent)
                    return 0
                # A one-step run (`runlog emit job --status succeeded --final`): started, then the outcome.
                traceparent, attrs = started.traceparent, {}
            print(client.record(traceparent, args.step, args.status or "info", attrs=attrs,
                                final=args.final).traceparent)
    except ClientError as error:
        _say(f"runlog emit: the appliance refused the event: {error}")
        return 1
    except httpx.HTTPError as error:
        _say(f"runlog emit: cannot reach {url}: {error}")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runlog", description="Provable automation runs: log, sign, anchor, verify.")
    parser.add_argument("--version", action="version", version=f"runlog {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler, help: str, description: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=description)
        sub.set_defaults(handler=handler)
        return sub

    command("demo", _demo, "log one run in memory, sign a checkpoint, verify proofs",
            "Demonstrate the evidence core without touching disk or network.")
    command("init", _init, "create the data directory, keys, store and an admin token",
            "Create what is missing under RUNLOG_DATA_DIR and RUNLOG_KEYS_DIR; print a new admin token once.")
    command("serve", _serve, "run the appliance's HTTP API",
            "Initialise on first start, then serve on RUNLOG_HOST:RUNLOG_PORT until SIGTERM.")

    token = command("token", _token, "create, list or revoke API tokens", "Manage bearer tokens in the local store.")
    token_commands = token.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    create = token_commands.add_parser("create", help="create a token and print it once")
    create.add_argument("name", help="the token's name; events appended with it carry it as their source")
    create.add_argument("--scopes", required=True, help="comma-separated: append, read, export, admin")
    token_commands.add_parser("list", help="list tokens (never their secrets)")
    revoke = token_commands.add_parser("revoke", help="revoke a token by name")
    revoke.add_argument("name")

    runs = command("runs", _runs, "list runs or show one run", "Read runs from the local store.")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")
    listing = runs_commands.add_parser("list", help="most recent runs first")
    listing.add_argument("--status", choices=["running", "succeeded", "failed"])
    listing.add_argument("--source", help="only runs started with this token name")
    listing.add_argument("--since", help="only runs started at or after this RFC 3339 time")
    listing.add_argument("--until", help="only runs started before this RFC 3339 time")
    listing.add_argument("--limit", type=int, default=20, help="at most this many runs (1-500, default 20)")
    show = runs_commands.add_parser("show", help="one run and its events")
    show.add_argument("trace_id")

    emit = command("emit", _emit, "send one event from a shell script",
                   "Send a step event to RUNLOG_URL with RUNLOG_TOKEN, continuing TRACEPARENT (or starting a run "
                   "when it is unset); print the traceparent for the next step.")
    emit.add_argument("step", help="the step's name (1-200 characters)")
    emit.add_argument("--status", choices=["started", "succeeded", "failed", "skipped", "info"],
                      help="the step's status (default info; without TRACEPARENT a run is started first, and a "
                           "status other than started, or --final, is then recorded as its next step)")
    emit.add_argument("--attr", action="append", default=[], metavar="KEY=TEXT",
                      help="an attribute whose value is text (repeatable)")
    emit.add_argument("--json-attr", action="append", default=[], metavar="KEY=JSON",
                      help="an attribute whose value is JSON: a number, true, false, null, an array or an object "
                           "(repeatable)")
    emit.add_argument("--final", action="store_true", help="this event closes the run")
    anchors_commands.register(commands)
    keys_command.register(commands)
    checkpoint_command.register(commands)
    verify_command.register(commands)
    export_command.register(commands)
    backup_command.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RunlogError as error:
        print(f"runlog: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
