"""Real services for the tests: a PostgreSQL database and a Chroma server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


@contextmanager
def postgres_server(workdir: Path) -> Iterator[str]:
    """A server URL: TEST_DATABASE_URL, else the local server when it answers,
    else a pgserver started under ``workdir``."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
    elif _answers(LOCAL_SERVER):
        yield LOCAL_SERVER
    else:
        import pgserver

        server = pgserver.get_server(workdir / "pgserver", cleanup_mode="stop")
        yield server.get_uri("postgres")


class Databases:
    """Makes a fresh database per caller on one server, and drops them all."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.created: list[str] = []

    def _url_for(self, name: str) -> str:
        return urlsplit(self.server_url)._replace(path=f"/{name}").geturl()

    def create(self) -> str:
        name = f"appliance_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        return self._url_for(name)

    def drop_all(self) -> None:
        with psycopg.connect(self.server_url, autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def chroma_server(workdir: Path) -> Iterator[str]:
    """``chroma run`` from the chromadb wheel, on a free loopback port."""
    port = free_port()
    chroma = Path(sys.executable).with_name("chroma")
    log = (workdir / "chroma.log").open("wb")
    process = subprocess.Popen(
        [str(chroma), "run", "--path", str(workdir / "chroma"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chroma did not start; see {workdir / 'chroma.log'}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()
