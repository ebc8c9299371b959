"""Side effects under crashes: runs that open a ticket on a real MCP server,
the appliance killed with SIGKILL at random points before, during and after
the call, and started again each time. Each ticket is opened at most once,
each run ends ``success``, and each thread holds exactly one result (or one
"outcome unknown") for each call."""

from __future__ import annotations

import random
import time

import httpx
import pytest

from tests.support.fake_ollama import MODEL, FakeOllama, ToolCalls
from tests.support.mcp_server import TOKEN, RunningErp
from tests.support.process import ServerProcess, appliance_env, start_server
from tests.support.services import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

KILLS = 20


def opens_a_ticket(body: dict) -> str | ToolCalls:
    """The model: a ticket titled as the user's message, then an answer quoting the tool."""
    messages = body["messages"]
    results = [m["content"] for m in messages if m["role"] == "tool"]
    if not results and body.get("tools"):
        return ToolCalls([("create_ticket", {"title": messages[-1]["content"]})])
    return f"Done: {results[-1] if results else 'nothing'}"


def test_a_tool_with_side_effects_runs_at_most_once_per_call_however_the_appliance_dies(
    databases, chroma_url, tmp_path
):
    erp = RunningErp()
    erp.state.ticket_delay_s = 0.6  # a kill can land while the call is out
    erp.start()
    with FakeOllama() as ollama:
        ollama.respond = opens_a_ticket
        ollama.word_delay = 0.1  # the answer after the call takes about half a second
        env = appliance_env(
            tmp_path / "data", databases.create(), chroma_url, chroma_collection="tool-crash-test",
            llm_provider="ollama", ollama_url=ollama.url, ollama_model=MODEL, log_format="json",
        )  # fmt: skip
        port, log = free_port(), tmp_path / "server.log"
        rng = random.Random(20261204)
        server: ServerProcess = start_server(env, port, log)
        key = (tmp_path / "data" / "admin-key").read_text().strip()
        client = httpx.Client(base_url=server.url, headers={"x-api-key": key}, timeout=120, trust_env=False)
        try:
            server_body = {"name": "tickets", "url": erp.state.url, "headers": {"Authorization": f"Bearer {TOKEN}"}}
            registered = client.post("/tool-servers", json=server_body)
            assert registered.status_code == 201 and not registered.json()["discovery_error"], registered.text
            body = {"graph_id": "agent", "name": "helpdesk", "context": {"tools": ["tickets/create_ticket"]}}
            assert client.post("/assistants", json=body).status_code == 200
            outcomes = []
            for i in range(KILLS):
                title = f"Ticket {i}: the printer on floor {i} is jammed"
                tid = client.post("/threads", json={}).json()["thread_id"]
                created = client.post(
                    f"/threads/{tid}/runs",
                    json={"assistant_id": "helpdesk", "input": {"messages": [{"role": "user", "content": title}]}},
                )
                assert created.status_code == 200, created.text
                run_id = created.json()["run_id"]
                kill_after = rng.uniform(0.0, 2.0)  # before, during or after the call, or in the answer
                time.sleep(kill_after)
                server.kill()
                server = start_server(env, port, log)

                joined = client.get(f"/threads/{tid}/runs/{run_id}/join")
                assert joined.status_code == 200, (i, kill_after, joined.text)
                assert client.get(f"/threads/{tid}/runs/{run_id}").json()["status"] == "success", (i, kill_after)
                messages = joined.json()["messages"]
                calls = [c for m in messages if m["type"] == "ai" for c in m.get("tool_calls") or []]
                results = [m for m in messages if m["type"] == "tool"]
                assert len(calls) == 1 and [r["tool_call_id"] for r in results] == [calls[0]["id"]], messages
                outcome = results[0]["artifact"]["outcome"]
                opened = erp.state.tickets[title]
                assert opened <= 1, (i, kill_after, opened)
                if outcome == "done":
                    assert opened == 1 and results[0]["status"] == "success", (i, kill_after, results)
                else:
                    assert outcome == "unknown" and "unknown" in results[0]["content"], (i, kill_after)
                assert messages[-1]["type"] == "ai"
                outcomes.append(outcome)
            # Every key the server saw was the run's own: run_id:tool_call_id.
            assert all(k.count(":") == 1 for k in erp.state.keys)
            assert TOKEN not in log.read_text()  # the server's header secret, in no log line
        finally:
            server.stop()
            erp.stop()
    print("outcomes:", {o: outcomes.count(o) for o in set(outcomes)})
