"""Real services for the tests: a PostgreSQL database and a Chroma server."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
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


class ChromaServer:
    """``chroma run`` from the chromadb wheel on a loopback port, which a test
    may kill and start again (same port, same data)."""

    def __init__(self, workdir: Path, data: Path | None = None) -> None:
        self.workdir = workdir
        self.data = data or workdir / "chroma"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60) -> None:
        chroma = Path(sys.executable).with_name("chroma")
        with (self.workdir / "chroma.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(chroma), "run", "--path", str(self.data), "--host", "127.0.0.1",
                 "--port", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"chroma did not start; see {self.workdir / 'chroma.log'}")
            time.sleep(0.2)

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL: the server dies as in a crash, mid-request."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@contextmanager
def chroma_server(workdir: Path) -> Iterator[str]:
    """A started :class:`ChromaServer`'s URL for the duration."""
    server = ChromaServer(workdir)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _postgres_bindir() -> Path:
    """The server binaries: the machine's own PostgreSQL, else the ones pgserver ships."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "pg_ctl").exists():
            return candidate
    import pgserver

    return Path(pgserver.__file__).parent / "pginstall" / "bin"


class PrivatePostgres:
    """A PostgreSQL server of the test's own, under ``root``, which the test may
    stop and start (the shared server it must not). As root it runs as the
    ``postgres`` user, as PostgreSQL insists."""

    def __init__(self, root: Path | None = None, *, wal_apart: bool = False) -> None:
        # Not under pytest's tmp_path: the postgres user cannot enter root's private directories.
        self.root = root or Path(tempfile.mkdtemp(prefix="appliance-pg-"))
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)
        root = self.root
        # The WAL on a disk of its own, when the data disk is to be filled.
        waldir = Path(tempfile.mkdtemp(prefix="appliance-wal-")) if wal_apart else None
        self.waldir = waldir
        self.bindir = _postgres_bindir()
        self.data = root / "pgdata"
        self.socket_dir = root / "socket"
        self.port = free_port()
        self.log = root / "postgres.log"
        self._held: int | None = None  # the WAL writer's pid while ``hold_wal_writer`` holds it
        self._as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        for path in (root, self.socket_dir, *([waldir] if waldir else [])):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o755)
            if self._as_user:
                shutil.chown(path, "postgres", "postgres")
        wal = ["--waldir", str(waldir / "wal")] if waldir else []
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", *wal)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self._as_user, str(self.bindir / tool), *args], capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stderr or done.stdout}")

    def remove(self) -> None:
        if self._held is not None:  # a test that failed while it was held: let the server stop
            os.kill(self._held, signal.SIGCONT)
        if self.running():
            self.stop()
        for path in (self.root, self.waldir):
            if path is not None:
                shutil.rmtree(path, ignore_errors=True)

    def start(self, *settings: str) -> None:
        """Started, with ``settings`` ("name=value") besides the test's defaults."""
        extra = "".join(f" -c {setting}" for setting in settings)
        options = f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c fsync=off{extra}"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "start")

    def stop(self) -> None:
        """A fast shutdown: sessions are cut, as on a restart of the service."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def _wal_writer(self) -> int | None:
        with psycopg.connect(self.url, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'walwriter'").fetchone()
        return row[0] if row else None

    def hold_wal_writer(self) -> None:
        """Stop the WAL writer where it is (SIGSTOP), so no commit reaches the
        disk but those that wait for it, until ``crash``."""
        self._held = self._wal_writer()
        os.kill(self._held, signal.SIGSTOP)

    def crash(self) -> None:
        """The server fails as the machine would: its WAL writer is killed, so
        PostgreSQL ends every process at once and starts again from the WAL on
        disk (what it held in memory is lost). Returns when it answers again."""
        killed, self._held = self._wal_writer(), None
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self._wal_writer() not in (killed, None):
                    return
            except psycopg.OperationalError:
                pass  # starting again
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL did not come back after a crash; see {self.log}")
            time.sleep(0.1)

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()


@contextmanager
def small_disk(size_mb: int) -> Iterator[Path]:
    """A directory on a tmpfs of ``size_mb`` megabytes, which the ``postgres``
    user may write to: a data disk a test can fill. Needs the right to mount."""
    root = Path(tempfile.mkdtemp(prefix="appliance-disk-"))
    root.chmod(0o777)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0777", "tmpfs", str(root)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode:
        root.rmdir()
        raise PermissionError(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield root
    finally:
        subprocess.run(["umount", "--lazy", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def fill(disk: Path) -> Path:
    """Write a ballast file until the disk has no byte left; returns it (delete it to free the space)."""
    ballast = disk / "ballast"
    block = b"\0" * (1 << 20)
    with ballast.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
        except OSError:
            pass
        try:  # the last partial block, to the byte
            while True:
                out.write(b"\0" * 4096)
        except OSError:
            pass
    return ballast
