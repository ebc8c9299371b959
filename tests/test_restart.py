"""Conversations survive a crash: the real server process on the embedded
default (pgserver, embedded Chroma, llama.cpp with SmolLM2), killed with
SIGKILL mid-life and started again."""

from __future__ import annotations

import httpx
import pytest

from tests.support.process import start_server
from tests.support.services import free_port

pytestmark = pytest.mark.slow

QUESTIONS = [
    "My name is Ada and I keep bees in Lyon.",
    "How many legs does a bee have?",
    "Suggest a name for my honey brand.",
]


def words(text: str) -> int:
    return len(text.split())


def test_history_survives_sigkill_and_the_model_still_sees_earlier_turns(tmp_path):
    env = {
        "APPLIANCE_DATA_DIR": str(tmp_path / "data"),
        "APPLIANCE_MAX_ANSWER_TOKENS": "48",
        "APPLIANCE_LOG_FORMAT": "json",
    }
    port, log = free_port(), tmp_path / "server.log"
    server = start_server(env, port, log)
    try:
        key = (tmp_path / "data" / "admin-key").read_text().strip()
        assert key in server.output()  # the first start printed it
        client = httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=300, trust_env=False)
        tid = client.post("/threads", json={"metadata": {"test": "restart"}}).json()["thread_id"]
        for question in QUESTIONS:
            response = client.post(
                f"/threads/{tid}/runs/wait",
                json={"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": question}]}},
            )
            assert response.status_code == 200, response.text
        state_before = client.get(f"/threads/{tid}/state").json()
        history_before = client.get(f"/threads/{tid}/history", params={"limit": 100}).json()
        messages = state_before["values"]["messages"]
        assert [m["type"] for m in messages] == ["human", "ai"] * 3
        assert all(m["content"].strip() for m in messages)  # real answers, not blanks

        server.kill()
        restarted = start_server(env, port, log)
        try:
            assert restarted.output().count(key) == 1  # no second key was made or shown
            assert client.get(f"/threads/{tid}/state").json() == state_before
            assert client.get(f"/threads/{tid}/history", params={"limit": 100}).json() == history_before
            assert client.get(f"/threads/{tid}").json()["status"] == "idle"

            follow_up = "What is my name, and where do I keep bees?"
            values = client.post(
                f"/threads/{tid}/runs/wait",
                json={"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": follow_up}]}},
            ).json()
            assert values["messages"][:6] == messages
            assert values["messages"][6]["content"] == follow_up
            reply = values["messages"][7]
            assert reply["type"] == "ai" and reply["content"].strip()
            # The model's prompt held every earlier turn: its own tokenizer counted
            # at least as many tokens as the earlier turns and the question have words.
            seen = sum(words(m["content"]) for m in values["messages"][:7])
            assert reply["usage_metadata"]["input_tokens"] >= seen
        finally:
            restarted.stop()
    finally:
        server.stop()
