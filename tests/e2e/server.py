"""A real `runlog serve` subprocess on 127.0.0.1 with its own data directory."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ADMIN_TOKEN = "test-admin-token-0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, port: int | None = None, **env: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "RUNLOG_DATA_DIR": str(data_dir), "RUNLOG_PORT": str(self.port),
                    "RUNLOG_HOST": "127.0.0.1", "RUNLOG_ADMIN_TOKEN": ADMIN_TOKEN, **env}
        self.process: subprocess.Popen | None = None

    def spawn(self) -> "Server":
        """Start the process without waiting for it to answer (to kill it during start-up)."""
        self.log = open(self.data_dir.parent / f"server-{self.port}.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve"], env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def start(self, timeout: float = 30.0) -> "Server":
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"runlog serve exited with {self.process.returncode}: {self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"runlog serve did not become healthy: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return (self.data_dir.parent / f"server-{self.port}.log").read_text(errors="replace")[-4000:]

    def runlog(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env={**self.env, **env},
                              capture_output=True, text=True, timeout=60)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)
