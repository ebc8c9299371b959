"""A run queued by one appliance process is executed by another with the
assistant version it was queued with: its instructions, its model and its
sampling settings, as the Ollama it calls sees them."""

from __future__ import annotations

import httpx
import pytest

from tests.support.fake_ollama import DIGEST, MODEL, FakeOllama
from tests.support.process import appliance_env, start_server
from tests.support.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CONFIGURED = "small:1b"  # the appliance's own model; MODEL is the one the manifest pins


@pytest.fixture
def ollama():
    with FakeOllama(models={MODEL: DIGEST, CONFIGURED: "0" * 64}) as fake:
        fake.reply = "Here is what version two says."
        yield fake


def test_a_worker_process_runs_a_run_with_the_assistant_version_it_was_queued_with(
    databases, chroma_url, ollama, tmp_path
):
    database = databases.create()
    common = {"llm_provider": "ollama", "ollama_url": ollama.url, "ollama_model": CONFIGURED}
    api_only = appliance_env(tmp_path / "api", database, chroma_url, worker_slots=0, **common)
    worker = appliance_env(tmp_path / "worker", database, chroma_url, **common)
    api = start_server(api_only, free_port(), tmp_path / "api.log")
    runner = start_server(worker, free_port(), tmp_path / "worker.log")
    key = (tmp_path / "api" / "admin-key").read_text().strip()
    client = httpx.Client(base_url=api.url, headers={"x-api-key": key}, timeout=120, trust_env=False)
    try:
        models = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert models == ["agent", "all-minilm-l6-v2"]
        created = client.post(
            "/assistants",
            json={"graph_id": "agent", "name": "support", "context": {"instructions": "Version one."}},
        )
        assert created.status_code == 200, created.text
        support = created.json()["assistant_id"]
        second = {"instructions": "Version two.", "model": MODEL, "temperature": 0.7, "max_tokens": 77}
        assert client.patch(f"/assistants/{support}", json={"context": second}).json()["version"] == 2

        thread = client.post("/threads", json={}).json()["thread_id"]
        body = {"assistant_id": "support", "input": {"messages": [{"role": "user", "content": "hello"}]}}
        values = client.post(f"/threads/{thread}/runs/wait", json=body)
        assert values.status_code == 200, values.text + api.output() + runner.output()
        assert values.json()["messages"][-1]["content"] == ollama.reply

        [call] = [r["body"] for r in ollama.chat_requests()]
        assert call["model"] == MODEL
        assert call["messages"][0] == {"role": "system", "content": "Version two."}
        assert call["options"]["temperature"] == 0.7 and call["options"]["num_predict"] == 77
        [run] = client.get(f"/threads/{thread}/runs").json()
        assert run["assistant_id"] == support and run["kwargs"]["assistant_version"] == 2
    finally:
        client.close()
        api.stop()
        runner.stop()
