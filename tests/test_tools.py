"""Tools: an assistant calls the tools of a real MCP server (the mcp SDK's
server over Streamable HTTP, on loopback) and the built-in ones, through the
production model path (langchain-ollama against the protocol-faithful fake
Ollama, which answers with ``message.tool_calls`` as Ollama does). Driven
with LangGraph's SDK, as a team's client would."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import uuid
from typing import Any

import msgspec
import pytest
from langgraph_sdk import get_client

from appliance.store.audit import Actor
from tests.support.app import ollama_settings, serve_app
from tests.support.fake_ollama import FakeOllama, ToolCalls
from tests.support.mcp_server import REBIND_NAME, TOKEN, RunningErp
from tests.support.services import free_port

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def erp():
    server = RunningErp().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fake_ollama():
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(scope="module")
async def app(fake_ollama, databases, chroma_url, tmp_path_factory):
    settings = ollama_settings(
        tmp_path_factory.mktemp("tools-app"), databases.create(), chroma_url, fake_ollama.url,
        tool_call_timeout_s="2", tool_list_timeout_s="3",
    )  # fmt: skip
    async with serve_app(settings) as served:
        yield served


@pytest.fixture(scope="module")
async def erp_server(app, erp) -> dict[str, Any]:
    body = {
        "name": "erp",
        "url": erp.state.url,
        "headers": {"Authorization": f"Bearer {TOKEN}"},
        "requires_approval": ["create_ticket"],
    }
    created = await app.client.post("/tool-servers", json=body)
    assert created.status_code == 201, created.text
    return created.json()


class Script:
    """The model, scripted by what it is sent: ``plan(messages)`` gives the
    tool calls of a step, or None to answer; the answer quotes the last tool result."""

    def __init__(self, plan) -> None:
        self.plan = plan
        self.requests: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]):
        self.requests.append(body)
        messages = body["messages"]
        calls = self.plan(messages) if body.get("tools") else None
        if calls:
            return ToolCalls(calls)
        results = [m["content"] for m in messages if m["role"] == "tool"]
        return f"From the tools: {results[-1]}" if results else "I have no tool result."


def tool_turns(messages: list[dict]) -> int:
    return sum(1 for m in messages if m["role"] == "tool")


async def assistant_with(app, tools: list[str], **context: Any) -> str:
    body = {"graph_id": "agent", "name": f"tools-{uuid.uuid4().hex[:6]}", "context": {"tools": tools, **context}}
    created = await app.client.post("/assistants", json=body)
    assert created.status_code == 200, created.text
    return created.json()["assistant_id"]


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_a_run_calls_an_mcp_tool_and_answers_from_its_result_and_the_stream_shows_both(
    app, erp, erp_server, fake_ollama
):
    assert {t["name"] for t in erp_server["tools"]} == {"lookup_order", "create_ticket", "slow_report"}
    lookup = next(t for t in erp_server["tools"] if t["name"] == "lookup_order")
    assert lookup["input_schema"]["required"] == ["order_id"] and lookup["description"].startswith("Look up")
    fake_ollama.respond = Script(lambda m: [("lookup_order", {"order_id": "A-1001"})] if not tool_turns(m) else None)
    assistant = await assistant_with(app, ["erp/lookup_order"])
    sdk = get_client(url=app.url, api_key=app.admin_key)
    thread = await sdk.threads.create()
    events = [
        (part.event, part.data)
        async for part in sdk.runs.stream(
            thread["thread_id"], assistant, input=ask("Where is my order A-1001?"),
            stream_mode=["updates", "messages-tuple", "custom"],
        )
    ]  # fmt: skip
    kinds = [e for e, _ in events]
    assert "error" not in kinds, events
    custom = [d for e, d in events if e == "custom" and d.get("node") == "call_tools"]
    assert [(c["name"], c["status"]) for c in custom] == [("lookup_order", "calling"), ("lookup_order", "done")]
    updated = [next(iter(d)) for e, d in events if e == "updates"]
    assert updated.index("act") < updated.index("call_tools") < len(updated) - 1 and updated[-1] == "act"
    streamed = [d[0] for e, d in events if e == "messages"]
    assert any(m.get("type") == "tool" and "shipped" in m["content"] for m in streamed)

    state = await sdk.threads.get_state(thread["thread_id"])
    messages = state["values"]["messages"]
    assert [m["type"] for m in messages] == ["human", "ai", "tool", "ai"]
    call = messages[1]["tool_calls"][0]
    assert (call["name"], call["args"]) == ("lookup_order", {"order_id": "A-1001"})
    assert messages[2]["tool_call_id"] == call["id"] and messages[2]["status"] == "success"
    assert "shipped on 2026-11-30" in messages[3]["content"]
    assert erp.state.lookups[-1] == "A-1001"
    # Ollama was asked with the tool bound, as its API takes one, and then with the result.
    sent = fake_ollama.respond.requests
    assert sent[0]["tools"][0]["function"]["name"] == "lookup_order"
    assert sent[1]["messages"][-1]["role"] == "tool" and "shipped" in sent[1]["messages"][-1]["content"]


async def test_bad_arguments_are_corrected_on_the_next_step_and_past_the_bound_the_answer_names_the_tool(
    app, erp, erp_server, fake_ollama
):
    def corrects(messages):
        tries = tool_turns(messages)
        if tries == 0:
            return [("lookup_order", {"order_id": "1002"})]  # refused by the server
        return [("lookup_order", {"order_id": "A-1002"})] if tries == 1 else None

    fake_ollama.respond = Script(corrects)
    assistant = await assistant_with(app, ["erp/*"])
    sdk = get_client(url=app.url, api_key=app.admin_key)
    thread = await sdk.threads.create()
    state = await sdk.runs.wait(thread["thread_id"], assistant, input=ask("Order 1002?"))
    tools = [m for m in state["messages"] if m["type"] == "tool"]
    assert [m["status"] for m in tools] == ["error", "success"]
    assert "order ids look like A-1001" in tools[0]["content"]
    assert "waiting for stock" in state["messages"][-1]["content"]
    # The server's error reached the model, which corrected its arguments.
    assert "order ids look like" in fake_ollama.respond.requests[1]["messages"][-1]["content"]

    fake_ollama.respond = Script(lambda m: [("lookup_order", {"order_id": f"bad-{tool_turns(m)}"})])
    state = await sdk.runs.wait(thread["thread_id"], assistant, input=ask("Order bad?"), context={"tool_retries": 1})
    answer = state["messages"][-1]
    assert answer["type"] == "ai" and "the tool lookup_order failed 2 times" in answer["content"]
    assert answer["response_metadata"]["answer_mode"] == "tool_failed"
    # The thread's earlier turn holds two tool results: this turn's calls were bad-2 and bad-3.
    assert "order ids look like A-1001, not 'bad-3'" in answer["content"]


async def test_a_call_that_needs_approval_pauses_and_is_approved_edited_or_rejected(app, erp, erp_server, fake_ollama):
    fake_ollama.respond = Script(
        lambda m: [("create_ticket", {"title": "Printer on fire"})] if not tool_turns(m) else None
    )
    assistant = await assistant_with(app, ["erp/create_ticket"])
    sdk = get_client(url=app.url, api_key=app.admin_key)

    async def paused() -> tuple[str, dict]:
        thread = await sdk.threads.create()
        await sdk.runs.wait(thread["thread_id"], assistant, input=ask("Open a ticket: the printer is on fire"))
        state = await sdk.threads.get_state(thread["thread_id"])
        assert (await sdk.threads.get(thread["thread_id"]))["status"] == "interrupted"
        (interrupt,) = [i for task in state["tasks"] for i in task["interrupts"]]
        return thread["thread_id"], interrupt["value"]

    before = dict(erp.state.tickets)
    tid, request = await paused()
    assert request["type"] == "tool_approval" and request["server"] == "erp" and request["tool"] == "erp/create_ticket"
    assert (
        request["tool_call"]["args"] == {"title": "Printer on fire"} and request["tool_call"]["name"] == "create_ticket"
    )
    assert erp.state.tickets == before  # nothing is sent before a person answers
    state = await sdk.runs.wait(tid, assistant, command={"resume": "approve"})
    assert erp.state.tickets["Printer on fire"] == before.get("Printer on fire", 0) + 1
    assert "Ticket T-" in state["messages"][-1]["content"]
    assert (await sdk.threads.get(tid))["status"] == "idle"

    tid, _ = await paused()
    # An edit that does not fit the tool's schema asks again, saying why.
    await sdk.runs.wait(tid, assistant, command={"resume": {"action": "edit", "args": {"name": "x"}}})
    state = await sdk.threads.get_state(tid)
    (again,) = [i["value"] for task in state["tasks"] for i in task["interrupts"]]
    assert "title" in again["problem"]
    state = await sdk.runs.wait(
        tid, assistant, command={"resume": {"action": "edit", "args": {"title": "Printer smoking"}}}
    )
    assert erp.state.tickets["Printer smoking"] == 1
    assert erp.state.tickets["Printer on fire"] == before.get("Printer on fire", 0) + 1

    tid, _ = await paused()
    state = await sdk.runs.wait(tid, assistant, command={"resume": {"action": "reject", "reason": "not now"}})
    assert erp.state.tickets["Printer on fire"] == before.get("Printer on fire", 0) + 1  # never sent
    rejected = [m for m in state["messages"] if m["type"] == "tool"][-1]
    assert "rejected" in rejected["content"] and "not now" in rejected["content"]
    assert rejected["artifact"]["outcome"] == "rejected"


async def test_a_hanging_tool_times_out_within_its_limit_and_the_model_is_told(app, erp, erp_server, fake_ollama):
    import time

    fake_ollama.respond = Script(lambda m: [("slow_report", {})] if not tool_turns(m) else None)
    assistant = await assistant_with(app, ["erp/slow_report"])
    sdk = get_client(url=app.url, api_key=app.admin_key)
    thread = await sdk.threads.create()
    started = time.monotonic()
    state = await sdk.runs.wait(thread["thread_id"], assistant, input=ask("The report, please"))
    assert time.monotonic() - started < 10
    tool = [m for m in state["messages"] if m["type"] == "tool"][0]
    assert tool["status"] == "error" and "did not answer within 2 s" in tool["content"]
    assert state["messages"][-1]["type"] == "ai"


async def test_an_unreachable_server_leaves_the_run_going_without_its_tools_and_readyz_reports_it(
    app, erp, erp_server, fake_ollama
):
    down = await app.client.post("/tool-servers", json={"name": "crm", "url": f"http://127.0.0.1:{free_port()}/mcp"})
    assert down.status_code == 201, down.text
    assert down.json()["discovery_error"] and down.json()["tools"] == []
    fake_ollama.respond = Script(lambda m: None)
    assistant = await assistant_with(app, ["crm/*", "calculator"])
    sdk = get_client(url=app.url, api_key=app.admin_key)
    thread = await sdk.threads.create()
    state = await sdk.runs.wait(thread["thread_id"], assistant, input=ask("Who is our contact at Initech?"))
    answer = state["messages"][-1]
    assert answer["type"] == "ai" and "crm" in answer["response_metadata"]["unavailable_tools"]
    system = fake_ollama.respond.requests[-1]["messages"][1]
    assert system["role"] == "system" and "The tools of crm cannot be used now" in system["content"]
    assert [t["function"]["name"] for t in fake_ollama.respond.requests[-1]["tools"]] == ["calculator"]

    ready = await app.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["degraded"] is True
    checks = ready.json()["checks"]
    assert checks["tool_server:crm"]["ok"] is False and checks["tool_server:erp"]["ok"] is True
    assert (await app.client.delete("/tool-servers/crm")).status_code == 204


async def test_built_in_tools_compute_and_tell_the_time(app, fake_ollama):
    fake_ollama.respond = Script(
        lambda m: [("calculator", {"expression": "(1250 * 12) / 7"}), ("current_time", {})]
        if not tool_turns(m) else None
    )  # fmt: skip
    assistant = await assistant_with(app, ["calculator", "current_time"])
    sdk = get_client(url=app.url, api_key=app.admin_key)
    thread = await sdk.threads.create()
    state = await sdk.runs.wait(thread["thread_id"], assistant, input=ask("What is 1250*12/7, and what time is it?"))
    results = {m["name"]: m["content"] for m in state["messages"] if m["type"] == "tool"}
    assert results["calculator"] == str(1250 * 12 / 7)
    assert results["current_time"].split()[0] in ("Monday Tuesday Wednesday Thursday Friday Saturday Sunday")


# Security ---------------------------------------------------------------------


async def test_a_url_outside_the_allowed_networks_is_refused_at_registration_and_at_call_time(
    app, erp, fake_ollama, monkeypatch
):
    outside = await app.client.post("/tool-servers", json={"name": "far", "url": "http://203.0.113.9/mcp"})
    assert outside.status_code == 422 and "203.0.113.9" in outside.json()["detail"]
    assert "APPLIANCE_TOOL_ALLOWED_NETWORKS" in outside.json()["detail"]

    # A name that resolves to loopback when registered, and elsewhere later (DNS rebinding).
    name = REBIND_NAME
    answers = {name: "127.0.0.1"}
    real = socket.getaddrinfo

    def resolve(host, port, *args, **kwargs):
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    url = erp.state.url.replace("127.0.0.1", name)
    body = {"name": "rebind", "url": url, "headers": {"Authorization": f"Bearer {TOKEN}"}}
    created = await app.client.post("/tool-servers", json=body)
    assert created.status_code == 201 and created.json()["discovery_error"] is None, created.text
    answers[name] = "203.0.113.9"
    lookups = len(erp.state.lookups)
    fake_ollama.respond = Script(lambda m: [("lookup_order", {"order_id": "A-1001"})] if not tool_turns(m) else None)
    assistant = await assistant_with(app, ["rebind/lookup_order"])
    sdk = get_client(url=app.url, api_key=app.admin_key)
    thread = await sdk.threads.create()
    state = await sdk.runs.wait(thread["thread_id"], assistant, input=ask("Order A-1001?"))
    tool = [m for m in state["messages"] if m["type"] == "tool"][0]
    assert tool["status"] == "error" and "outside the networks" in tool["content"]
    assert len(erp.state.lookups) == lookups  # never sent
    assert (await app.client.delete("/tool-servers/rebind")).status_code == 204


async def test_a_tenant_key_cannot_register_servers_nor_use_tools_not_allowed_for_it(app, erp, erp_server):
    _, secret = await app.runtime.keys.create(f"t-{uuid.uuid4().hex[:6]}", actor=Actor.host())
    tenant = app.as_key(secret)
    refused = await tenant.post("/tool-servers", json={"name": "mine", "url": erp.state.url})
    assert refused.status_code == 403
    assert (await tenant.get("/tool-servers")).status_code == 403

    only_acme = {"name": "acme-erp", "url": erp.state.url, "tenants": ["acme"]}
    assert (await app.client.post("/tool-servers", json=only_acme)).status_code == 201
    body = {"graph_id": "agent", "name": "mine", "context": {"tools": ["acme-erp/lookup_order"]}}
    denied = await tenant.post("/assistants", json=body)
    assert denied.status_code == 404 and "context.tools" in denied.text
    unknown = await tenant.post("/assistants", json={"graph_id": "agent", "context": {"tools": ["erp/drop_tables"]}})
    assert unknown.status_code == 404 and "drop_tables" in unknown.text
    allowed = await tenant.post("/assistants", json={"graph_id": "agent", "context": {"tools": ["erp/lookup_order"]}})
    assert allowed.status_code == 200, allowed.text
    assert (await app.client.delete("/tool-servers/acme-erp")).status_code == 204


async def test_no_header_secret_in_any_response_or_log_line(app, erp, erp_server, caplog):
    caplog.set_level(logging.DEBUG)
    listed = await app.client.get("/tool-servers")
    one = await app.client.get("/tool-servers/erp")
    refreshed = await app.client.post("/tool-servers/erp/refresh")
    audit = await app.client.get("/audit", params={"limit": 200})
    for response in (listed, one, refreshed, audit):
        assert response.status_code == 200, response.text
        assert TOKEN not in response.text
    assert one.json()["header_names"] == ["Authorization"] and "headers" not in one.json()
    assert erp_server["header_names"] == ["Authorization"] and TOKEN not in json.dumps(erp_server)
    assert TOKEN not in caplog.text and not any(TOKEN in str(r.__dict__) for r in caplog.records)


# The ledger, at the points a crash leaves it in ------------------------------


async def test_a_call_a_crash_left_unanswered_is_sent_again_only_to_an_idempotent_tool(app, erp, erp_server):
    from appliance.tools.toolbox import UNKNOWN_OUTCOME

    toolbox = app.runtime.tool_servers.toolbox
    tools = await toolbox.for_run(["erp/create_ticket", "erp/lookup_order"], "default")
    ticket, lookup = tools.named("create_ticket"), tools.named("lookup_order")
    thread = uuid.UUID((await app.client.post("/threads", json={})).json()["thread_id"])
    run = uuid.uuid4()

    # The process died after writing 'sent', before the answer: a side effect may have happened.
    await toolbox.ledger.sent(run, "call-1", thread, ticket.ref, {"title": "Crash A"})
    result = await toolbox.call_once(ticket, {"title": "Crash A"}, run_id=run, thread_id=thread, tool_call_id="call-1")
    assert result.unknown and result.text == UNKNOWN_OUTCOME.format(tool="create_ticket")
    assert erp.state.tickets["Crash A"] == 0

    # An idempotent tool is simply asked again; its answer is then kept.
    idempotent = msgspec.structs.replace(lookup, idempotent=True)
    await toolbox.ledger.sent(run, "call-2", thread, lookup.ref, {"order_id": "A-1002"})
    again = await toolbox.call_once(
        idempotent, {"order_id": "A-1002"}, run_id=run, thread_id=thread, tool_call_id="call-2"
    )
    assert "waiting for stock" in again.text and not again.unknown
    assert (await toolbox.ledger.get(run, "call-2")).state == "done"

    # A result recorded before a crash is given back, not fetched again.
    made = await toolbox.call_once(ticket, {"title": "Crash B"}, run_id=run, thread_id=thread, tool_call_id="call-3")
    replay = await toolbox.call_once(ticket, {"title": "Crash B"}, run_id=run, thread_id=thread, tool_call_id="call-3")
    assert replay == made and erp.state.tickets["Crash B"] == 1
    assert erp.state.keys[-1] == f"{run}:call-3"  # the idempotency key, in the request's metadata


async def tools_cli(app, tmp_path, *args: str) -> tuple[int, str, str]:
    key_file = tmp_path / "key"
    key_file.write_text(app.admin_key + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli.main", *args, "--url", app.url, "--key-file", str(key_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "", "APPLIANCE_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_adds_lists_and_removes_tool_servers_and_gives_an_assistant_tools(app, erp, tmp_path):
    code, out, err = await tools_cli(
        app, tmp_path, "tools", "add", "erp-cli", erp.state.url, "-H", f"Authorization: Bearer {TOKEN}",
        "--allow", "lookup_order", "--approval", "lookup_order",
    )  # fmt: skip
    assert code == 0, err
    assert "erp-cli/lookup_order  [needs approval]" in out and "erp-cli/create_ticket  [not allowed" in out
    assert "headers: Authorization (values not shown)" in out and TOKEN not in out
    code, out, err = await tools_cli(app, tmp_path, "tools", "list", "--json")
    assert code == 0 and "erp-cli" in {s["name"] for s in json.loads(out)}
    code, out, err = await tools_cli(app, tmp_path, "assistants", "create", "ops", "--tool", "erp-cli/lookup_order")
    assert code == 0, err
    code, out, err = await tools_cli(app, tmp_path, "assistants", "create", "ops2", "--tool", "erp-cli/create_ticket")
    assert code == 2 and "context.tools" in err and "create_ticket" in err
    code, out, err = await tools_cli(app, tmp_path, "tools", "add", "far", "http://203.0.113.9/mcp")
    assert code == 2 and "outside the networks" in err
    code, out, err = await tools_cli(app, tmp_path, "tools", "remove", "erp-cli")
    assert code == 0 and "removed" in out
    code, out, err = await tools_cli(app, tmp_path, "tools", "show", "erp-cli")
    assert code == 2 and "no tool server" in err


async def test_search_documents_is_a_tool_the_model_calls_with_its_own_query_and_the_answer_cites_it(app, fake_ollama):
    from tests.support.corpus import HANDBOOK_MD
    from tests.support.turns import new_kb, upload

    kb = await new_kb(app.client)
    assert (await upload(app.client, kb, "handbook.md", HANDBOOK_MD.encode())).status_code == 201

    def searches(messages):
        return [("search_documents", {"query": "paid leave days per year"})] if not tool_turns(messages) else None

    script = Script(searches)
    fake_ollama.respond = lambda body: (
        script(body) if not tool_turns(body["messages"]) else "Employees get 27 days of paid leave a year [1]. [7]"
    )
    assistant = await assistant_with(app, ["search_documents"], knowledge_bases=[kb])
    sdk = get_client(url=app.url, api_key=app.admin_key)
    thread = await sdk.threads.create()
    state = await sdk.runs.wait(thread["thread_id"], assistant, input=ask("How much leave do I get?"))
    result = [m for m in state["messages"] if m["type"] == "tool"][0]
    assert result["name"] == "search_documents" and result["content"].startswith("[1] (handbook.md")
    assert "27 days of paid leave" in result["content"]
    answer = state["messages"][-1]
    # [1] is a passage the search returned; [7] points at none and is removed.
    assert answer["content"] == "Employees get 27 days of paid leave a year [1]."
    (citation,) = answer["response_metadata"]["citations"]
    assert citation["index"] == 1 and citation["source"] == "handbook.md" and "27 days" in citation["text"]
    assert state["citations"] == answer["response_metadata"]["citations"]
