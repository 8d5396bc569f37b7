# runlog appliance image. Build: `docker build -t runlog .`; run: see README.md ("Container").
# Pinned by version tag (Python patch release and Debian release); pin a digest too in production.
# Named once: the venv built in one stage runs in the other, so both must have the same Python.
FROM python:3.12.13-slim-bookworm AS base

FROM base AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY appliance ./appliance
# The README's install command, in a venv at /opt/runlog and without `-e`: the image keeps the
# installed package, not the source tree (tests/test_dockerfile.py keeps the two in step). Then
# the venv's own pip goes: nothing runs it in the image, and it is the older one ensurepip bundled.
RUN python3 -m venv /opt/runlog && /opt/runlog/bin/pip install -q . \
 && /opt/runlog/bin/pip uninstall -q -y pip

FROM base

# uid/gid 10001: outside the range of the base image's users and of most hosts' login users.
RUN groupadd --system --gid 10001 runlog \
 && useradd --system --uid 10001 --gid runlog --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin runlog \
 && install -d -o runlog -g runlog -m 0750 /data \
 && install -d -o runlog -g runlog -m 0700 /keys
COPY --from=build /opt/runlog /opt/runlog

ENV PATH=/opt/runlog/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RUNLOG_DATA_DIR=/data \
    RUNLOG_KEYS_DIR=/keys \
    RUNLOG_HOST=0.0.0.0 \
    RUNLOG_PORT=8080
VOLUME ["/data", "/keys"]
WORKDIR /data
# Numeric, so Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8080

# The slim base has no curl or wget: probe with the image's own Python. http.client, not urllib,
# so an HTTP(S)_PROXY given to the container is not asked for 127.0.0.1. Anything but a 200
# within 4 s is unhealthy; /healthz answers 503 when the writer stops or an anchor forks or lags.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import http.client, os; c = http.client.HTTPConnection('127.0.0.1', int(os.environ.get('RUNLOG_PORT') or 8080), timeout=4); c.request('GET', '/healthz'); raise SystemExit(0 if c.getresponse().status == 200 else 1)"]

# Exec form: runlog is PID 1 and receives SIGTERM itself; it drains the writer and exits 0.
CMD ["runlog", "serve"]
