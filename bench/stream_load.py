"""Thousands of streams open at once: how much the appliance adds to a turn.

--servers server processes (2: one a core) share one database and run queue,
each with a model that takes --answer-seconds per answer (streamed word by
word) and serves any number at once (model_concurrency and worker_slots are
set to the number of streams). This process opens --streams SSE streams, each
a turn on its own thread, spread over the servers and ramped at --ramp per
second, and times each until its last event.

--durability: what each run asks (sync, async or exit; none: the appliance's default).

--compare-lane W: batches of --streams alternate, --rounds times, between the
servers' turn lane off and W wide (appliance/pacing.py; switched by signal in
the same server processes, so nothing else differs), and the ratios of the
means are printed: lane against none.

Printed: how many completed, the appliance's own overhead per turn (the
turn's time minus the model's) at p50 and p99, and of it the wait for the
stream's first event (the turn's admission: the key, the thread, the run
queued and started); the most streams open at once, the servers' CPU per turn
and their peak memory, PostgreSQL's CPU per turn when it runs on this host,
and this client's own (it shares the cores); and as it happens, each garbage
collection that held a server's loop half a second or more.
Run: python -m bench.stream_load [--streams 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import cpu_seconds, percentile, postgres_cpu_seconds
from tests.support.process import NO_RATE_LIMITS
from tests.support.services import Databases, free_port, postgres_server


def raise_file_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# The server side ---------------------------------------------------------------


def report_long_collections(threshold_s: float = 0.5) -> None:
    """Say on stderr each garbage collection that held the server's loop for ``threshold_s`` or more."""
    import gc

    started: list[float] = []

    def timed(phase: str, info: dict) -> None:
        if phase == "start":
            started[:] = [time.perf_counter(), time.process_time()]
        elif started and (took := time.perf_counter() - started[0]) >= threshold_s:
            cpu = time.process_time() - started[1]
            print(
                f"server {os.getpid()}: a generation {info['generation']} collection took {took:.1f} s "
                f"({cpu:.1f} s of CPU, {info['collected']} objects freed)",
                flush=True,
            )

    gc.callbacks.append(timed)


# --compare-lane: the servers' lane is switched off and on by these signals.
LANE_OFF, LANE_ON = signal.SIGUSR1, signal.SIGUSR2


def serve(port: int, words: int, answer_s: float, lane_width: int | None) -> None:
    import uvicorn

    from appliance.api.app import create_app
    from tests.support.scripted_model import ScriptedChatModel, scripted_language_model

    raise_file_limit()
    report_long_collections()
    reply = " ".join(f"word{i}" for i in range(words))
    chat = ScriptedChatModel(delay=answer_s / words, reply=lambda messages, calls: reply)
    app = create_app(model=scripted_language_model(chat, name="five-seconds"))
    if lane_width is not None:
        signal.signal(LANE_OFF, lambda *_: setattr(app.state.runtime.lane, "width", 0))
        signal.signal(LANE_ON, lambda *_: setattr(app.state.runtime.lane, "width", lane_width))
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, backlog=16384, timeout_keep_alive=30)
    uvicorn.Server(config).run()


# The client side ---------------------------------------------------------------


class Tally:
    def __init__(self) -> None:
        self.open = 0
        self.most_open = 0
        self.turns: list[float] = []
        # From each completed turn's request to its stream's first event.
        self.first_events: list[float] = []
        self.failures: list[str] = []


def run_body(durability: str | None) -> bytes:
    """What every stream asks: a turn streamed token by token, then its values."""
    asked = {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": "hello"}]},
        "stream_mode": ["messages-tuple", "values"],
    }
    return json.dumps(asked | ({"durability": durability} if durability else {})).encode()


def stream_request(thread_id: str, key: str, body: bytes) -> bytes:
    """A turn's POST .../runs/stream as it goes on the wire; the server closes when the run ends."""
    return (
        f"POST /threads/{thread_id}/runs/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


async def one_stream(port: int, key: str, thread_id: str, body: bytes, tally: Tally) -> None:
    request = stream_request(thread_id, key, body)
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    except OSError as exc:
        tally.failures.append(f"connect: {exc!r}")
        return
    tally.open += 1
    tally.most_open = max(tally.most_open, tally.open)
    try:
        writer.write(request)
        await writer.drain()
        received = await reader.readuntil(b"event: ")
        first_event = time.perf_counter() - started
        received += await reader.read()  # the server closes when the run ends
        elapsed = time.perf_counter() - started
        head, _, events = received.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            tally.failures.append(head.split(b"\r\n", 1)[0].decode())
        elif b"event: error" in events or events.rsplit(b"event: ", 1)[-1].split(b"\n", 1)[0] != b"values":
            tally.failures.append("the stream did not end with the final values")
        elif events.count(b"event: messages") < 2:
            tally.failures.append("no tokens arrived")
        else:
            tally.turns.append(elapsed)
            tally.first_events.append(first_event)
    except (OSError, asyncio.IncompleteReadError) as exc:
        tally.failures.append(f"stream: {exc!r}")
    finally:
        tally.open -= 1
        writer.close()


async def make_threads(url: str, key: str, count: int) -> list[str]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, limits=limits, timeout=60) as client:
        gate = asyncio.Semaphore(100)

        async def one() -> str:
            async with gate:
                return (await client.post("/threads", json={})).json()["thread_id"]

        return await asyncio.gather(*(one() for _ in range(count)))


async def drive(ports: list[int], key: str, threads: list[str], ramp: int, body: bytes) -> tuple[Tally, float]:
    tally = Tally()
    started = time.perf_counter()
    tasks = []
    for i, thread_id in enumerate(threads):
        port = ports[i % len(ports)]
        tasks.append(asyncio.create_task(one_stream(port, key, thread_id, body, tally)))
        if i % 100 == 99:
            await asyncio.sleep(100 / ramp)
    await asyncio.gather(*tasks)
    return tally, time.perf_counter() - started


def wait_healthy(port: int) -> None:
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server on port {port} did not start")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Batch:
    """One batch of streams: what the client saw, and the servers' CPU meanwhile
    (and PostgreSQL's, None when it does not run on this host), and this
    process's: the client's, on the same cores as the servers."""

    def __init__(
        self, tally: Tally, wall: float, cpu: float, answer_s: float, db_cpu: float | None, client_cpu: float
    ) -> None:
        self.tally, self.wall, self.cpu, self.db_cpu, self.client_cpu = tally, wall, cpu, db_cpu, client_cpu
        self.overhead = [t - answer_s for t in tally.turns]

    @property
    def cpu_a_turn_ms(self) -> float:
        return self.cpu / max(1, len(self.tally.turns)) * 1000

    def p(self, q: float) -> float:
        return percentile(self.overhead, q) if self.overhead else float("nan")


def run_batch(servers: list[subprocess.Popen], ports: list[int], key: str, args: argparse.Namespace) -> Batch:
    threads = asyncio.run(make_threads(f"http://127.0.0.1:{ports[0]}", key, args.streams))
    cpu_before, db_before = sum(cpu_seconds(s.pid) for s in servers), postgres_cpu_seconds()
    client_before = time.process_time()
    tally, wall = asyncio.run(drive(ports, key, threads, args.ramp, run_body(args.durability)))
    client_cpu = time.process_time() - client_before
    cpu, db_after = sum(cpu_seconds(s.pid) for s in servers) - cpu_before, postgres_cpu_seconds()
    db_cpu = db_after - db_before if db_before is not None and db_after is not None else None
    return Batch(tally, wall, cpu, args.answer_seconds, db_cpu, client_cpu)


def report(batch: Batch, rss: float) -> None:
    tally = batch.tally
    print(f"completed: {len(tally.turns)}   failed: {len(tally.failures)}   most open at once: {tally.most_open}")
    if tally.failures:
        print("first failures:", sorted(set(tally.failures))[:5])
    if batch.overhead:
        print(
            f"appliance overhead per turn: p50 {batch.p(50) * 1000:.0f} ms   "
            f"p99 {batch.p(99) * 1000:.0f} ms   max {max(batch.overhead) * 1000:.0f} ms"
        )
        first = [t * 1000 for t in tally.first_events]
        print(f"  of it, to the first event: p50 {percentile(first, 50):.0f} ms   p99 {percentile(first, 99):.0f} ms")
    print(
        f"servers' peak RSS (sum): {rss:.0f} MB   wall time: {batch.wall:.1f} s   server CPU: {batch.cpu:.1f} s "
        f"({batch.cpu_a_turn_ms:.1f} ms a turn)"
    )
    if batch.db_cpu is not None:
        db_ms = batch.db_cpu / max(1, len(tally.turns)) * 1000
        print(f"PostgreSQL's CPU (its processes on this host): {db_ms:.1f} ms a turn")
    client_ms = batch.client_cpu / max(1, len(tally.turns)) * 1000
    print(f"this client's CPU, on the same cores: {client_ms:.1f} ms a turn")


def compare_lane(servers: list[subprocess.Popen], ports: list[int], key: str, args: argparse.Namespace) -> None:
    """Batches alternating, in the same servers, between no lane and one --compare-lane wide."""
    batches: dict[str, list[Batch]] = {"none": [], "lane": []}
    for round_ in range(args.rounds):
        order = ("none", "lane") if round_ % 2 == 0 else ("lane", "none")
        for which in order:
            for server in servers:
                os.kill(server.pid, LANE_ON if which == "lane" else LANE_OFF)
            batch = run_batch(servers, ports, key, args)
            batches[which].append(batch)
            print(
                f"round {round_ + 1} {which:>4}: {batch.cpu_a_turn_ms:.1f} ms of CPU a turn, overhead p50 "
                f"{batch.p(50):.2f} s, p99 {batch.p(99):.2f} s, wall {batch.wall:.1f} s, "
                f"completed {len(batch.tally.turns)}, failed {len(batch.tally.failures)}",
                flush=True,
            )

    def mean(which: str, figure) -> float:
        return sum(map(figure, batches[which])) / len(batches[which])

    figures = {
        "CPU a turn (ms)": lambda b: b.cpu_a_turn_ms,
        "overhead p50 (s)": lambda b: b.p(50),
        "overhead p99 (s)": lambda b: b.p(99),
        "wall (s)": lambda b: b.wall,
    }
    print(f"lane {args.compare_lane} wide against none, means of {args.rounds} batches each:")
    for name, figure in figures.items():
        lane, none = mean("lane", figure), mean("none", figure)
        print(f"  {name:<18} {lane:8.2f} against {none:8.2f}   ratio {lane / none:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--answer-seconds", type=float, default=5.0)
    parser.add_argument("--words", type=int, default=10)
    parser.add_argument("--ramp", type=int, default=2000, help="new streams a second")
    parser.add_argument("--servers", type=int, default=2, help="server processes sharing the database and queue")
    parser.add_argument("--durability", choices=["sync", "async", "exit"], help="what each run asks (default: none)")
    parser.add_argument("--compare-lane", type=int, metavar="W", help="alternate batches: no turn lane, one W wide")
    parser.add_argument("--rounds", type=int, default=4, help="with --compare-lane: batches of each")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lane-width", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.words, args.answer_seconds, args.lane_width)
        return

    raise_file_limit()
    with tempfile.TemporaryDirectory() as tmp, postgres_server(Path(tmp)) as server_url:
        databases = Databases(server_url)
        port = free_port()
        env = {
            **os.environ,
            "APPLIANCE_DATA_DIR": tmp,
            "APPLIANCE_DATABASE_URL": databases.create(),
            "APPLIANCE_LOG_LEVEL": "warning",
            "APPLIANCE_MODEL_CONCURRENCY": str(args.streams),
            "APPLIANCE_WORKER_SLOTS": str(args.streams),
            "APPLIANCE_DB_POOL_MIN_SIZE": "4",
            "APPLIANCE_DB_POOL_MAX_SIZE": "40",
            # One key opens every stream: its rate limits are off for a capacity test.
            **{f"APPLIANCE_{k.upper()}": v for k, v in NO_RATE_LIMITS.items()},
        }
        ports = [port] + [free_port() for _ in range(args.servers - 1)]
        servers = []
        try:
            for one in ports:  # one after another: the first makes the schema and the admin key
                command = [sys.executable, "-m", "bench.stream_load", "--serve", str(one)]
                command += ["--words", str(args.words), "--answer-seconds", str(args.answer_seconds)]
                if args.compare_lane is not None:
                    command += ["--lane-width", str(args.compare_lane)]
                servers.append(subprocess.Popen(command, env=env))
                wait_healthy(one)
            key = (Path(tmp) / "admin-key").read_text().strip()
            print(
                f"streams: {args.streams} (ramped at {args.ramp}/s) over {args.servers} server process(es); "
                f"model: {args.answer_seconds:.1f} s an answer; durability: {args.durability or 'the default'}"
            )
            if args.compare_lane is not None:
                compare_lane(servers, ports, key, args)
            else:
                batch = run_batch(servers, ports, key, args)
                report(batch, sum(peak_rss_mb(s.pid) for s in servers))
        finally:
            for server in servers:
                server.terminate()
                server.wait(60)
            databases.drop_all()


if __name__ == "__main__":
    main()
