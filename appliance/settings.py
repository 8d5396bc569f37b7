"""The appliance's configuration, read from `RUNLOG_*` environment variables in this one place.

Every variable has a default that runs on one laptop. An empty value counts as unset (so
`RUNLOG_PORT= runlog serve` means the default), an invalid one raises `SettingsError` naming the
variable. Secrets come from the variable or from a file named by `<VAR>_FILE` (Docker and
Kubernetes secrets), never both; a file's trailing newline is dropped. Secrets never appear in
`repr()`.
"""

import ipaddress
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

from appliance.core.errors import NoteFormatError, RunlogError
from appliance.core.keys import check_key_name
from appliance.core.receipt import RESERVED_PREFIX as RECEIPT_PREFIX
from appliance.loops import LOOPS, uvloop_installed
from appliance.store.tokens import MAX_TOKEN_CHARS, MIN_ADOPTED_TOKEN_CHARS

MIB = 1024 * 1024
DAY_SECONDS = 86_400
SYNCHRONOUS_MODES = ("FULL", "NORMAL", "EXTRA")
HTTP_PARSERS = ("auto", "h11", "httptools")
_VISIBLE_ASCII = re.compile(r"[!-~]+")
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750: what may follow "Bearer "
_HOST_NAME = re.compile(r"[A-Za-z0-9._-]{1,253}")
_PRINTABLE_ASCII = re.compile(r"[ -~]+")
_PG_TABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")
_S3_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{1,254}")  # wider than AWS: S3-compatible stores differ
_S3_PREFIX = re.compile(r"[!-~]{0,512}")
_S3_REGION = re.compile(r"[A-Za-z0-9_-]{1,64}")


class SettingsError(RunlogError):
    """An environment variable holds a value the appliance cannot use; the message names it."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Validated configuration. Build it with `Settings.from_env()`, or directly in tests.

    `checkpoint_interval` is in seconds; `public_url` and `slack_api_url` have no trailing slash
    and one, respectively (`public_url + "/v1/..."`, `slack_api_url + "chat.postMessage"`).
    """

    data_dir: Path = Path("data")
    keys_dir: Path = Path("data/keys")
    signing_key_file: Path | None = None  # the log key from a mounted secret instead of keys_dir/log.key
    origin: str = "localhost/runlog"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"
    checkpoint_interval: float = 300.0
    max_body_bytes: int = 8 * MIB
    max_batch: int = 1000
    synchronous: str = "FULL"
    admin_token: str | None = field(default=None, repr=False)
    slack_signing_secret: str | None = field(default=None, repr=False)
    slack_bot_token: str | None = field(default=None, repr=False)
    slack_api_url: str = "https://slack.com/api/"
    # Anchors: any of them, none by default. The lag threshold (seconds) is when /healthz degrades.
    anchor_postgres_dsn: str | None = field(default=None, repr=False)
    anchor_postgres_table: str = "runlog_checkpoints"
    anchor_s3_bucket: str | None = None
    anchor_s3_prefix: str = ""
    anchor_s3_endpoint: str | None = None
    anchor_s3_region: str | None = None
    anchor_s3_retention_days: int = 400
    anchor_dir: Path | None = None
    anchor_lag_threshold: float = 3600.0
    # Abuse limits (appliance.web.rate_limit, appliance.web.client_limits). Behind a reverse proxy,
    # list it in trusted_proxies so that the failed-auth limiter counts clients, not the proxy.
    auth_failure_burst: int = 20
    auth_failure_refill: float = 3.0
    trusted_proxies: tuple[str, ...] = ()
    max_header_bytes: int = 16 * 1024
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    http_parser: str = "auto"
    loop: str = "auto"  # the event loop (appliance.loops): uvloop when installed, else asyncio
    # HTTP worker processes; 1 serves everything in one process (see appliance.workers.supervisor).
    workers: int = field(default_factory=lambda: auto_workers())

    @property
    def db_path(self) -> Path:
        return self.data_dir / "runlog.sqlite"

    def __repr__(self) -> str:
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr]
        hidden = [f"{f.name}={'<set>' if getattr(self, f.name) else None}" for f in fields(self) if not f.repr]
        return f"Settings({', '.join(shown + hidden)})"

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> "Settings":
        """Read and check every `RUNLOG_*` setting; raise `SettingsError` on the first bad one."""
        data_dir = Path(_get(env, "RUNLOG_DATA_DIR") or "./data")
        host = _host(_get(env, "RUNLOG_HOST") or "127.0.0.1")
        port = _integer(env, "RUNLOG_PORT", 8080, 1, 65_535)
        # A wildcard listen address is no address to give clients: point them at loopback.
        reachable = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        default_url = f"http://{f'[{reachable}]' if ':' in reachable else reachable}:{port}"
        return cls(
            data_dir=data_dir,
            keys_dir=Path(_get(env, "RUNLOG_KEYS_DIR") or data_dir / "keys"),
            signing_key_file=Path(path) if (path := _get(env, "RUNLOG_SIGNING_KEY_FILE")) else None,
            origin=_origin(_get(env, "RUNLOG_ORIGIN") or "localhost/runlog"),
            host=host,
            port=port,
            public_url=_url(env, "RUNLOG_PUBLIC_URL", default_url).rstrip("/"),
            checkpoint_interval=_seconds(env, "RUNLOG_CHECKPOINT_INTERVAL", 300.0),
            max_body_bytes=_integer(env, "RUNLOG_MAX_BODY_BYTES", 8 * MIB, 1024, 1024 * MIB),
            max_batch=_integer(env, "RUNLOG_MAX_BATCH", 1000, 1, 100_000),
            synchronous=_synchronous(env),
            admin_token=_admin_token(env),
            slack_signing_secret=_secret(env, "RUNLOG_SLACK_SIGNING_SECRET"),
            slack_bot_token=_secret(env, "RUNLOG_SLACK_BOT_TOKEN"),
            slack_api_url=_url(env, "RUNLOG_SLACK_API_URL", "https://slack.com/api/").rstrip("/") + "/",
            anchor_postgres_dsn=_secret(env, "RUNLOG_ANCHOR_POSTGRES_DSN", spaces=True),
            anchor_postgres_table=_matching(env, "RUNLOG_ANCHOR_POSTGRES_TABLE", _PG_TABLE,
                                            "a table name (letters, digits, _; optionally schema.table)",
                                            "runlog_checkpoints"),
            anchor_s3_bucket=_matching(env, "RUNLOG_ANCHOR_S3_BUCKET", _S3_BUCKET, "an S3 bucket name"),
            anchor_s3_prefix=_matching(env, "RUNLOG_ANCHOR_S3_PREFIX", _S3_PREFIX,
                                       "up to 512 printable ASCII characters without spaces", ""),
            anchor_s3_endpoint=_url(env, "RUNLOG_ANCHOR_S3_ENDPOINT", "") or None,
            anchor_s3_region=_matching(env, "RUNLOG_ANCHOR_S3_REGION", _S3_REGION, "a region name like eu-west-1"),
            anchor_s3_retention_days=_integer(env, "RUNLOG_ANCHOR_S3_RETENTION_DAYS", 400, 1, 36_500),
            anchor_dir=Path(anchor_dir) if (anchor_dir := _get(env, "RUNLOG_ANCHOR_DIR")) else None,
            anchor_lag_threshold=_seconds(env, "RUNLOG_ANCHOR_LAG_THRESHOLD", 3600.0),
            auth_failure_burst=_integer(env, "RUNLOG_AUTH_FAILURE_BURST", 20, 1, 100_000),
            auth_failure_refill=_seconds(env, "RUNLOG_AUTH_FAILURE_REFILL", 3.0),
            trusted_proxies=_networks(env, "RUNLOG_TRUSTED_PROXIES"),
            max_header_bytes=_integer(env, "RUNLOG_MAX_HEADER_BYTES", 16 * 1024, 1024, MIB),
            header_timeout=_seconds(env, "RUNLOG_HEADER_TIMEOUT", 10.0),
            body_timeout=_seconds(env, "RUNLOG_BODY_TIMEOUT", 60.0),
            http_parser=_choice(env, "RUNLOG_HTTP_PARSER", HTTP_PARSERS),
            loop=_loop(env),
            workers=auto_workers() if (_get(env, "RUNLOG_WORKERS") or "auto").strip() == "auto"
            else _integer(env, "RUNLOG_WORKERS", 1, 1, MAX_WORKERS),
        )


MAX_WORKERS = 64
AUTO_WORKERS_AT_MOST = 8


def available_cores() -> int:
    """The CPUs this process may run on, bounded by a cgroup v2 CPU quota (`docker run --cpus`)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cores


def auto_workers() -> int:
    """RUNLOG_WORKERS=auto (the default): one HTTP worker per core, so one core means one process."""
    return min(available_cores(), AUTO_WORKERS_AT_MOST)


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    return value if value else None


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = _get(env, name)
    if text is None:
        return default
    if not re.fullmatch(r"[0-9]{1,12}", text.strip()):
        raise SettingsError(name, f"must be a whole number {low}..{high}, got {text[:40]!r}")
    value = int(text)
    if not low <= value <= high:
        raise SettingsError(name, f"must be {low}..{high}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = _get(env, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise SettingsError(name, f"must be a number of seconds, got {text[:40]!r}") from None
    # A daily root needs a checkpoint at least once a day.
    if not math.isfinite(value) or not 0 < value <= DAY_SECONDS:
        raise SettingsError(name, f"must be more than 0 and at most {DAY_SECONDS} seconds, got {text[:40]!r}")
    return value


def _matching(env: Mapping[str, str], name: str, pattern: re.Pattern[str], what: str,
              default: str | None = None) -> str | None:
    text = _get(env, name)
    if text is None:
        return default
    if not pattern.fullmatch(text):
        raise SettingsError(name, f"must be {what}, got {text[:80]!r}")
    return text


def _synchronous(env: Mapping[str, str]) -> str:
    text = (_get(env, "RUNLOG_SYNCHRONOUS") or "FULL").strip().upper()
    if text not in SYNCHRONOUS_MODES:
        raise SettingsError("RUNLOG_SYNCHRONOUS", f"must be one of {', '.join(SYNCHRONOUS_MODES)}, got {text[:20]!r}")
    return text


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    text = (_get(env, name) or choices[0]).strip().lower()
    if text not in choices:
        raise SettingsError(name, f"must be one of {', '.join(choices)}, got {text[:20]!r}")
    return text


def _loop(env: Mapping[str, str]) -> str:
    name = _choice(env, "RUNLOG_LOOP", LOOPS)
    if name == "uvloop" and not uvloop_installed():
        raise SettingsError("RUNLOG_LOOP", "uvloop is not installed (pip install uvloop), or use auto or asyncio")
    return name


def _networks(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """Comma-separated IP addresses or networks (CIDR), e.g. the reverse proxies in front."""
    found = []
    for part in (_get(env, name) or "").split(","):
        if part.strip():
            try:
                found.append(str(ipaddress.ip_network(part.strip(), strict=False)))
            except ValueError:
                raise SettingsError(name, f"must be IP addresses or networks, got {part.strip()[:60]!r}") from None
    return tuple(found)


def _origin(text: str) -> str:
    try:
        check_key_name(text)
    except NoteFormatError as error:
        raise SettingsError("RUNLOG_ORIGIN", f"not a valid note key name: {error}") from None
    if text.startswith(RECEIPT_PREFIX):
        raise SettingsError("RUNLOG_ORIGIN", f"names starting with {RECEIPT_PREFIX!r} are reserved for receipts")
    return text


def _host(text: str) -> str:
    host = text.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOST_NAME.fullmatch(host):
        raise SettingsError("RUNLOG_HOST", f"must be an IP address or a host name, got {text[:60]!r}")
    return host


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    text = _get(env, name)
    if text is None:
        return default
    try:
        parts = urlsplit(text.strip())
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as error:
        raise SettingsError(name, f"not a URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise SettingsError(name, f"must be an http(s) URL without query or fragment, got {text[:80]!r}")
    return text.strip()


def _admin_token(env: Mapping[str, str]) -> str | None:
    """RUNLOG_ADMIN_TOKEN becomes a bearer token, so it must be one the token store adopts."""
    token = _secret(env, "RUNLOG_ADMIN_TOKEN", min_chars=MIN_ADOPTED_TOKEN_CHARS)
    if token is not None and not _B64TOKEN.fullmatch(token):
        name = "RUNLOG_ADMIN_TOKEN_FILE" if _get(env, "RUNLOG_ADMIN_TOKEN_FILE") else "RUNLOG_ADMIN_TOKEN"
        raise SettingsError(name, "must use only A-Z a-z 0-9 - . _ ~ + / and trailing = (an RFC 6750 bearer token)")
    return token


def _secret(env: Mapping[str, str], name: str, *, min_chars: int = 1, spaces: bool = False) -> str | None:
    """The secret from `name` or from the file `name_FILE` names; never both. `spaces` admits
    inner spaces (a libpq key=value connection string)."""
    file_name = f"{name}_FILE"
    value, path = _get(env, name), _get(env, file_name)
    if value is not None and path is not None:
        raise SettingsError(name, f"set either {name} or {file_name}, not both")
    if path is not None:
        try:
            value = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as error:
            raise SettingsError(file_name, f"cannot read {path!r}: {error.__class__.__name__}") from None
        name = file_name
    if value is None:
        return None
    allowed = _PRINTABLE_ASCII if spaces else _VISIBLE_ASCII
    if not allowed.fullmatch(value) or not min_chars <= len(value) <= MAX_TOKEN_CHARS:
        raise SettingsError(name, f"must be {min_chars}..{MAX_TOKEN_CHARS} printable ASCII characters"
                                  + ("" if spaces else " without spaces"))
    return value
