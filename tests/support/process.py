"""The appliance as a real server process (``appliance serve``)."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

# For tests whose one key sends far more than a person would (test_rate_limits proves the limits).
NO_RATE_LIMITS = {
    f"limit_{scope}_{kind}": "0"
    for scope in ("key", "tenant")
    for kind in ("requests_per_minute", "runs_in_flight", "uploads_in_flight")
}


def appliance_env(
    data_dir: Path, database_url: str, chroma_url: str | None = None, **settings: object
) -> dict[str, str]:
    """The APPLIANCE_* variables of an appliance on these stores; ``settings`` by their names in settings.py."""
    env = {
        "APPLIANCE_DATA_DIR": str(data_dir),
        # Apps of one session share the Chroma server; each keeps its own collection.
        "APPLIANCE_CHROMA_COLLECTION": f"chunks-{database_url.rsplit('/', 1)[-1]}",
        "APPLIANCE_DATABASE_URL": database_url,
        **{f"APPLIANCE_{k.upper()}": str(v) for k, v in settings.items()},
    }
    if chroma_url:
        env["APPLIANCE_CHROMA_URL"] = chroma_url
    return env


@dataclass
class ServerProcess:
    process: subprocess.Popen
    url: str
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text()


def start_server(
    env: dict[str, str], port: int, log: Path, timeout: float = 120, *, ca_file: Path | None = None
) -> ServerProcess:
    """``appliance serve`` on ``port``, once /healthz answers (over HTTPS, trusting ``ca_file``, when given)."""
    appliance = Path(sys.executable).with_name("appliance")
    handle = log.open("ab")
    process = subprocess.Popen(
        [str(appliance), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    url = f"{'https' if ca_file else 'http'}://127.0.0.1:{port}"
    verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"appliance exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1, trust_env=False, verify=verify).status_code == 200:
                return ServerProcess(process, url, log)
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.kill()
    raise RuntimeError(f"appliance did not become healthy:\n{log.read_text()[-3000:]}")
