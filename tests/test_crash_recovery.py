"""Durable runs: the server process is killed with SIGKILL at random points of
a background run and started again; every run finishes, and every thread
holds its turn's answer exactly once."""

from __future__ import annotations

import random
import time

import httpx
import pytest

from tests.support.fake_ollama import MODEL, FakeOllama
from tests.support.process import ServerProcess, start_server
from tests.support.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

KILLS = 20
REPLY = "Bees have six legs, two pairs of wings and five eyes in all."


@pytest.fixture
def slow_ollama():
    with FakeOllama() as fake:
        fake.reply = REPLY
        fake.word_delay = 0.12  # an answer takes about 1.5 s
        yield fake


def test_runs_survive_sigkill_twenty_times_with_nothing_lost_or_doubled(databases, chroma_url, slow_ollama, tmp_path):
    env = {
        "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
        "APPLIANCE_DATABASE_URL": databases.create(),
        "APPLIANCE_CHROMA_URL": chroma_url,
        "APPLIANCE_CHROMA_COLLECTION": "crash-test",
        "APPLIANCE_LLM_PROVIDER": "ollama",
        "APPLIANCE_OLLAMA_URL": slow_ollama.url,
        "APPLIANCE_OLLAMA_MODEL": MODEL,
        "APPLIANCE_LOG_FORMAT": "json",
    }
    port, log = free_port(), tmp_path / "server.log"
    rng = random.Random(20261121)
    server: ServerProcess = start_server(env, port, log)
    key = (tmp_path / "data" / "admin-key").read_text().strip()
    client = httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=120, trust_env=False)
    try:
        for i in range(KILLS):
            question = f"Question {i}: how many legs does a bee have?"
            tid = client.post("/threads", json={}).json()["thread_id"]
            created = client.post(
                f"/threads/{tid}/runs",
                json={"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": question}]}},
            )
            assert created.status_code == 200, created.text
            run_id = created.json()["run_id"]
            kill_after = rng.uniform(0.0, 1.8)  # before, during or just after the answer
            time.sleep(kill_after)
            server.kill()
            server = start_server(env, port, log)

            joined = client.get(f"/threads/{tid}/runs/{run_id}/join")
            assert joined.status_code == 200, (i, kill_after, joined.text)
            messages = joined.json()["messages"]
            assert [(m["type"], m["content"]) for m in messages] == [("human", question), ("ai", REPLY)], kill_after
            assert client.get(f"/threads/{tid}/runs/{run_id}").json()["status"] == "success"
            assert client.get(f"/threads/{tid}").json()["status"] == "idle"
            history = client.get(f"/threads/{tid}/history", params={"limit": 100}).json()
            assert {len(h["values"].get("messages", [])) for h in history} <= {0, 1, 2}
    finally:
        server.stop()


async def test_an_api_server_without_workers_leaves_runs_to_an_appliance_worker_process(
    databases, chroma_url, slow_ollama, tmp_path
):
    import asyncio
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.support.app import make_settings, serve_app

    slow_ollama.word_delay = 0.0
    database = databases.create()
    common = {"chroma_collection": "worker-test", "llm_provider": "ollama"}
    common |= {"ollama_url": slow_ollama.url, "ollama_model": MODEL}
    settings = make_settings(tmp_path / "api", database, chroma_url, worker_slots="0", **common)
    env = {
        **os.environ,
        "APPLIANCE_DATA_DIR": str(tmp_path / "worker"),
        "APPLIANCE_DATABASE_URL": database,
        "APPLIANCE_CHROMA_URL": chroma_url,
        **{f"APPLIANCE_{k.upper()}": v for k, v in common.items()},
    }
    async with serve_app(settings) as api:
        tid = (await api.client.post("/threads", json={})).json()["thread_id"]
        body = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "who answers?"}]}}
        run = (await api.client.post(f"/threads/{tid}/runs", json=body)).json()
        await asyncio.sleep(1)
        assert (await api.client.get(f"/threads/{tid}/runs/{run['run_id']}")).json()["status"] == "pending"

        worker = subprocess.Popen([str(Path(sys.executable).with_name("appliance")), "worker"], env=env)
        try:
            joined = await api.client.get(f"/threads/{tid}/runs/{run['run_id']}/join", timeout=120)
            assert joined.status_code == 200, joined.text
            assert [m["content"] for m in joined.json()["messages"]] == ["who answers?", REPLY]
        finally:
            worker.terminate()
            assert worker.wait(60) == 0
