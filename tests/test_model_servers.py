"""The model served from several Ollama servers (APPLIANCE_OLLAMA_URLS): calls
spread over the live ones, one killed under load is taken out without a run
failing, reported by /readyz and /metrics, and taken back once it is restarted.
Three fake Ollama servers, each its own HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest

from tests.support.app import ollama_settings, serve_app
from tests.support.fake_ollama import FakeOllama

pytestmark = pytest.mark.timeout(300)

RUNS = 300
KILL_AFTER = 100
AT_ONCE = 24
UNLIMITED = {"limit_key_runs_in_flight": "0", "limit_tenant_runs_in_flight": "0",
             "limit_key_requests_per_minute": "0", "limit_tenant_requests_per_minute": "0"}  # fmt: skip


async def run_many(client, count: int, on_done=None) -> list[int]:
    """``count`` stateless runs, ``AT_ONCE`` at a time; each one's HTTP status."""
    gate, statuses = asyncio.Semaphore(AT_ONCE), []

    async def one(i: int) -> None:
        async with gate:
            body = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": f"Hello {i}"}]}}
            response = await client.post("/runs/wait", json=body)
            ok = response.status_code == 200 and response.json()["messages"][-1]["content"].startswith("Paris")
            statuses.append(response.status_code if ok else -response.status_code)
            if on_done is not None:
                on_done(len(statuses))

    await asyncio.gather(*(one(i) for i in range(count)))
    return statuses


def metric(text: str, name: str, server: str) -> float:
    match = re.search(rf'^{name}{{server="{re.escape(server)}"}} ([0-9.e+]+)$', text, re.MULTILINE)
    assert match, (name, server)
    return float(match.group(1))


def test_a_killed_fake_ollama_closes_its_kept_alive_connections_as_a_dead_process_does():
    """A client's pooled connection must not reach the killed server's threads
    once another server has the port (the test below restarts one)."""
    fake = FakeOllama().__enter__()
    body = {"model": "qwen2.5:3b", "messages": [{"role": "user", "content": "hi"}]}
    try:
        with httpx.Client(base_url=fake.url, timeout=10) as client:
            assert client.post("/api/chat", json=body).status_code == 200  # the connection is kept alive
            fake.kill()
            fake = fake.restarted()
            lines = client.post("/api/chat", json=body).text.splitlines()
            assert json.loads(lines[-1])["done"] is True, lines
    finally:
        fake.__exit__()


async def test_calls_spread_over_the_servers_and_a_killed_one_is_taken_out_and_back(databases, chroma_url, tmp_path):
    fakes = [FakeOllama().__enter__() for _ in range(3)]
    for fake in fakes:
        fake.word_delay = 0.005  # answers take a while, so a kill lands in the middle of some
    settings = ollama_settings(
        tmp_path, databases.create(), chroma_url, fakes[0].url,
        ollama_urls=",".join(f.url for f in fakes), ollama_probe_s="0.2", model_concurrency="4", **UNLIMITED,
    )  # fmt: skip
    victim = fakes[1]
    try:
        async with serve_app(settings) as app:
            client = app.client

            def kill_midway(done: int) -> None:
                if done == KILL_AFTER:
                    victim.kill()

            statuses = await run_many(client, RUNS, on_done=kill_midway)
            assert statuses == [200] * RUNS  # no run failed
            counts = [len(f.chat_requests()) for f in fakes]
            survivors = [counts[0], counts[2]]
            assert all(abs(c - sum(survivors) / 2) <= 0.2 * sum(survivors) / 2 for c in survivors), counts
            assert 0 < counts[1] < survivors[0], counts  # it served until it was killed

            ready = (await client.get("/readyz")).json()
            assert ready["ready"] and ready["degraded"]
            assert not ready["checks"][f"model_server:{victim.url}"]["ok"]
            assert ready["checks"][f"model_server:{fakes[0].url}"]["ok"]
            metrics = (await client.get("/metrics")).text
            assert metric(metrics, "appliance_model_server_up", victim.url) == 0
            assert metric(metrics, "appliance_model_server_up", fakes[2].url) == 1
            assert metric(metrics, "appliance_model_server_failures_total", victim.url) >= 1

            fakes[1] = victim.restarted()
            for _ in range(50):  # the probe asks every 0.2 s
                ready = (await client.get("/readyz")).json()
                if ready["checks"][f"model_server:{victim.url}"]["ok"]:
                    break
                await asyncio.sleep(0.2)
            assert not ready["degraded"], ready
            assert await run_many(client, 30) == [200] * 30
            assert len(fakes[1].chat_requests()) >= 5  # it takes calls again
    finally:
        for fake in fakes:
            if not fake.dead:
                fake.__exit__()
