"""What tools cost the appliance, with a tool that answers at once (a real
MCP server on loopback) and a model that answers at once:

(a) per call: the appliance's call (allowlist check, ledger written before and
    after, a Streamable HTTP session per call, the call) against the bare
    call on an MCP session already open;
(b) per turn through POST /threads/{id}/runs/wait: an assistant without
    tools, one with tools bound that answers without calling, and one that
    makes one call a turn;
(c) a round trip of a client's tool (the call handed back, then the result
    sent and answered): through /v1/chat/completions with OpenAI's client,
    against the same two runs through the run API.

    python -m bench.tool_call [--calls 300] [--turns 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import httpx2
from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from openai import AsyncOpenAI

from bench.common import bench_settings, percentile, summary
from tests.support.app import serve_app
from tests.support.mcp_server import TOKEN, RunningErp
from tests.support.scripted_model import scripted_language_model

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


class InstantToolModel(BaseChatModel):
    """Answers at once; with tools bound and ``calls`` set, first calls lookup_order."""

    calls: bool = False

    @property
    def _llm_type(self) -> str:
        return "instant-tools"

    def bind_tools(self, tools: Any, **kwargs: Any):
        return self.bind(tools=tools)

    def _generate(self, messages, stop=None, run_manager=None, tools=None, **kwargs) -> ChatResult:
        if tools and self.calls and isinstance(messages[-1], HumanMessage):
            name = tools[0]["function"]["name"]  # the first tool bound: lookup_order, or the client's
            call = {"name": name, "args": {"order_id": "A-1001"}, "id": f"call_{uuid.uuid4().hex}"}
            message = AIMessage(content="", tool_calls=[call])
        else:
            message = AIMessage(content="ok")
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return self._generate(messages, **kwargs)


async def timed(n: int, call) -> list[float]:
    for _ in range(10):
        await call()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def main(calls: int, turns: int) -> None:
    erp = RunningErp().start()
    chat = InstantToolModel()
    try:
        with bench_settings() as settings:
            async with serve_app(settings, scripted_language_model(chat, name="instant")) as app:
                client = app.client
                created = await client.post("/tool-servers", json={"name": "erp", "url": erp.state.url,
                                                                   "headers": HEADERS})  # fmt: skip
                assert created.status_code == 201, created.text
                toolbox = app.runtime.tool_servers.toolbox
                spec = (await toolbox.for_run(["erp/lookup_order"], "default")).named("lookup_order")
                args = {"order_id": "A-1001"}
                thread = uuid.UUID((await client.post("/threads", json={})).json()["thread_id"])
                run = uuid.uuid4()

                # The bare SDK on one session, opened once.
                async with (
                    httpx2.AsyncClient(headers=HEADERS) as http,
                    Client(streamable_http_client(erp.state.url, http_client=http)) as bare_client,
                ):

                    async def bare() -> None:
                        result = await bare_client.call_tool("lookup_order", args)
                        assert not result.is_error

                    bare_s = await timed(calls, bare)

                async def unrecorded() -> None:
                    await toolbox.call(spec, args, idempotency_key="bench")

                async def recorded() -> None:
                    await toolbox.call_once(spec, args, run_id=run, thread_id=thread, tool_call_id=uuid.uuid4().hex)

                session_s = await timed(calls, unrecorded)
                appliance_s = await timed(calls, recorded)

                async def turn_with(tools: list[str], calling: bool) -> list[float]:
                    chat.calls = calling
                    body = {"graph_id": "agent", "name": f"b-{uuid.uuid4().hex[:6]}", "context": {"tools": tools}}
                    assistant = (await client.post("/assistants", json=body)).json()["assistant_id"]
                    tid = (await client.post("/threads", json={})).json()["thread_id"]
                    run_body = {"assistant_id": assistant, "input": {"messages": [{"role": "user", "content": "hi"}]}}

                    async def one() -> None:
                        response = await client.post(f"/threads/{tid}/runs/wait", json=run_body)
                        assert response.status_code == 200, response.text

                    return await timed(turns, one)

                plain = await turn_with([], False)
                bound = await turn_with(["erp/lookup_order", "calculator"], False)
                calling = await turn_with(["erp/lookup_order"], True)

                # (c) The client's tool, both ways; each round trip on a conversation of its own.
                chat.calls = True
                function = {"name": "find_order", "description": "An order", "parameters": {"type": "object"}}
                question = {"role": "user", "content": "Where is order A-1001?"}
                openai = AsyncOpenAI(base_url=f"{app.url}/v1", api_key=app.admin_key, max_retries=0)

                async def through_openai() -> None:
                    named = {"X-Conversation-Id": uuid.uuid4().hex}
                    tools = [{"type": "function", "function": function}]
                    first = await openai.chat.completions.create(
                        model="agent", messages=[question], tools=tools, extra_headers=named
                    )
                    (call,) = first.choices[0].message.tool_calls
                    result = {"role": "tool", "tool_call_id": call.id, "content": "shipped"}
                    second = await openai.chat.completions.create(
                        model="agent", messages=[result], tools=tools, extra_headers=named
                    )
                    assert second.choices[0].finish_reason == "stop"

                async def through_runs() -> None:
                    tid = (await client.post("/threads", json={})).json()["thread_id"]
                    context = {"client_tools": [function]}
                    body = {"assistant_id": "agent", "input": {"messages": [question]}, "context": context}
                    first = (await client.post(f"/threads/{tid}/runs/wait", json=body)).json()
                    call = first["messages"][-1]["tool_calls"][0]
                    result = {"role": "tool", "tool_call_id": call["id"], "content": "shipped"}
                    body = {"assistant_id": "agent", "input": {"messages": [result]}, "context": context}
                    second = (await client.post(f"/threads/{tid}/runs/wait", json=body)).json()
                    assert second["messages"][-1]["content"] == "ok"

                via_openai = await timed(turns // 2, through_openai)
                via_runs = await timed(turns // 2, through_runs)
    finally:
        erp.stop()

    print(summary("MCP call, bare SDK, open session", bare_s))
    print(summary("toolbox.call (kept session)", session_s))
    print(summary("toolbox.call_once (with ledger)", appliance_s))
    overhead = [a - percentile(bare_s, 50) for a in appliance_s]
    print(f"appliance's own overhead per call: p50 {percentile(overhead, 50) * 1000:.2f} ms  "
          f"p99 {percentile(overhead, 99) * 1000:.2f} ms  (ledger: "
          f"{(percentile(appliance_s, 50) - percentile(session_s, 50)) * 1000:.2f} ms at p50)")  # fmt: skip
    print(summary("turn, no tools", plain))
    print(summary("turn, tools bound, no call", bound))
    print(summary("turn, one tool call", calling))
    print(f"ratio tools bound / no tools: p50 {percentile(bound, 50) / percentile(plain, 50):.2f}x  "
          f"p99 {percentile(bound, 99) / percentile(plain, 99):.2f}x")  # fmt: skip
    print(f"ratio one call / no tools:    p50 {percentile(calling, 50) / percentile(plain, 50):.2f}x  "
          f"p99 {percentile(calling, 99) / percentile(plain, 99):.2f}x")  # fmt: skip
    print(summary("client tool round trip, /v1", via_openai))
    print(summary("client tool round trip, run API", via_runs))
    print(f"ratio /v1 / run API: p50 {percentile(via_openai, 50) / percentile(via_runs, 50):.2f}x  "
          f"p99 {percentile(via_openai, 99) / percentile(via_runs, 99):.2f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--turns", type=int, default=200)
    options = parser.parse_args()
    asyncio.run(main(options.calls, options.turns))
