"""The runs engine, driven by LangGraph's own Python client (langgraph_sdk from
PyPI) against the appliance over HTTP: no request here is hand-made."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from langgraph_sdk import get_client

from appliance.services.assistants import ASSISTANT_ID
from tests.support.app import model_delay
from tests.support.corpus import HOURS_TXT
from tests.support.turns import new_kb, upload

pytestmark = pytest.mark.timeout(120)


def said(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def human_texts(state: dict) -> list[str]:
    return [m["content"] for m in state["values"].get("messages", []) if m["type"] == "human"]


@pytest.fixture(scope="module")
async def sdk_app(databases, chroma_url, tmp_path_factory):
    from tests.support.app import serve_scripted

    data_dir, database = tmp_path_factory.mktemp("sdk"), databases.create()
    extra = {"webhook_backoff_s": "0.1", "model_concurrency": "4"}
    async with serve_scripted(data_dir, database, chroma_url, **extra) as served:
        served.sdk = get_client(url=served.url, api_key=served.admin_key)
        yield served


@pytest.fixture
def slow(sdk_app):
    """The model takes 0.1 s a word while the test runs (an answer: about a second)."""
    with model_delay(sdk_app, 0.1):
        yield sdk_app


async def until_running(client, thread_id: str, run_id: str) -> None:
    for _ in range(200):
        if (await client.runs.get(thread_id, run_id))["status"] == "running":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the run never started")


async def test_sdk_finds_the_agent_and_reads_its_schemas(sdk_app):
    client = sdk_app.sdk
    found = await client.assistants.search(graph_id="agent")
    assert [a["assistant_id"] for a in found] == [ASSISTANT_ID]
    assert (await client.assistants.get(ASSISTANT_ID))["graph_id"] == "agent"
    schemas = await client.assistants.get_schemas("agent")
    assert "messages" in schemas["input_schema"]["properties"]
    assert "knowledge_bases" in schemas["context_schema"]["properties"]
    assert "review_queries" in schemas["config_schema"]["properties"]
    drawing = await client.assistants.get_graph("agent")
    assert {"respond", "retrieve", "generate"} <= {n["id"] for n in drawing["nodes"]}


async def test_sdk_streams_a_run_token_by_token(sdk_app):
    client = sdk_app.sdk
    thread = await client.threads.create()
    parts = [
        part
        async for part in client.runs.stream(
            thread["thread_id"], "agent", input=said("hello there"), stream_mode=["messages-tuple", "values"]
        )
    ]
    assert parts[0].event == "metadata"
    tokens = [p.data[0]["content"] for p in parts if p.event == "messages"]
    final = [p.data for p in parts if p.event == "values"][-1]
    assert len(tokens) >= 5 and "".join(tokens) == final["messages"][-1]["content"]
    assert human_texts(await client.threads.get_state(thread["thread_id"])) == ["hello there"]


async def test_background_run_is_joined_listed_and_read(sdk_app):
    client = sdk_app.sdk
    thread = await client.threads.create()
    run = await client.runs.create(thread["thread_id"], "agent", input=said("in the background"))
    assert run["status"] in ("pending", "running") and run["thread_id"] == thread["thread_id"]
    values = await client.runs.join(thread["thread_id"], run["run_id"])
    assert [m["type"] for m in values["messages"]] == ["human", "ai"]
    assert (await client.runs.get(thread["thread_id"], run["run_id"]))["status"] == "success"
    listed = await client.runs.list(thread["thread_id"])
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    assert (await client.threads.get(thread["thread_id"]))["status"] == "idle"


async def test_a_run_checkpoints_each_step_unless_it_asks_for_its_turns_end_only(sdk_app):
    client = sdk_app.sdk
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "agent", input=said("first"))
    each_step = len(await client.threads.get_history(tid, limit=100))
    assert each_step >= 3  # the input, and a checkpoint after each step

    for durability, more in (("exit", 1), ("async", each_step), ("sync", each_step)):
        before = len(await client.threads.get_history(tid, limit=100))
        values = await client.runs.wait(tid, "agent", input=said(f"with {durability}"), durability=durability)
        assert values["messages"][-1]["type"] == "ai"
        assert len(await client.threads.get_history(tid, limit=100)) == before + more, durability
    state = await client.threads.get_state(tid)
    assert human_texts(state) == ["first", "with exit", "with async", "with sync"] and not state["next"]


async def test_cancel_interrupt_keeps_the_work_and_rollback_erases_it(slow):
    client = slow.sdk
    thread = await client.threads.create()
    tid = thread["thread_id"]

    kept = await client.runs.create(tid, "agent", input=said("keep my question"))
    await until_running(client, tid, kept["run_id"])
    await client.runs.cancel(tid, kept["run_id"], wait=True, action="interrupt")
    assert (await client.runs.get(tid, kept["run_id"]))["status"] == "interrupted"
    assert human_texts(await client.threads.get_state(tid)) == ["keep my question"]

    undone = await client.runs.create(tid, "agent", input=said("forget this"))
    await until_running(client, tid, undone["run_id"])
    await client.runs.cancel(tid, undone["run_id"], wait=True, action="rollback")
    with pytest.raises(httpx.HTTPStatusError) as gone:
        await client.runs.get(tid, undone["run_id"])
    assert gone.value.response.status_code == 404
    assert human_texts(await client.threads.get_state(tid)) == ["keep my question"]
    assert (await client.threads.get(tid))["status"] == "idle"


async def test_a_caller_leaving_a_join_with_cancel_on_disconnect_stops_the_run(slow):
    client = slow.sdk
    tid = (await client.threads.create())["thread_id"]
    left = await client.runs.create(tid, "agent", input=said("stop when I leave"))
    await until_running(client, tid, left["run_id"])
    join = f"/threads/{tid}/runs/{left['run_id']}/join"
    async with slow.as_key(slow.admin_key) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(join, params={"cancel_on_disconnect": "true"}, timeout=0.3)
    await client.runs.join(tid, left["run_id"])
    assert (await client.runs.get(tid, left["run_id"]))["status"] == "interrupted"
    assert human_texts(await client.threads.get_state(tid)) == ["stop when I leave"]

    stays = await client.runs.create(tid, "agent", input=said("finish without me"))
    await until_running(client, tid, stays["run_id"])
    async with slow.as_key(slow.admin_key) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"/threads/{tid}/runs/{stays['run_id']}/join", timeout=0.3)
    await client.runs.join(tid, stays["run_id"])
    assert (await client.runs.get(tid, stays["run_id"]))["status"] == "success"


async def leave_after_a_token(parts) -> None:
    """Read a stream until the answer's first token, then close it: the client leaves."""
    async for part in parts:
        if part.event.startswith("messages"):
            break
    else:
        raise AssertionError("the stream ended before the answer's first token")
    await parts.aclose()


async def until_ended(client, thread_id: str, run_id: str) -> dict | None:
    """The run once it has ended (None: it was erased)."""
    for _ in range(300):
        try:
            run = await client.runs.get(thread_id, run_id)
        except httpx.HTTPStatusError as exc:
            assert exc.response.status_code == 404
            return None
        if run["status"] not in ("pending", "running"):
            return run
        await asyncio.sleep(0.02)
    raise AssertionError("the run never ended")


async def test_a_caller_leaving_a_stream_undoes_the_turn_only_when_it_asked(slow):
    """A stream's client leaving mid-answer: on_disconnect='cancel' (the
    default) erases the turn, 'continue' lets it finish; a joined stream with
    cancel_on_disconnect interrupts the run."""
    client = slow.sdk
    tid = (await client.threads.create())["thread_id"]
    parts = client.runs.stream(tid, "agent", input=said("undo me if I leave"), stream_mode="messages-tuple")
    await leave_after_a_token(parts)
    runs = await client.runs.list(tid)
    assert len(runs) <= 1
    if runs:
        assert await until_ended(client, tid, runs[0]["run_id"]) is None  # rolled back: erased
    assert human_texts(await client.threads.get_state(tid)) == []

    parts = client.runs.stream(
        tid, "agent", input=said("finish without me"), stream_mode="messages-tuple", on_disconnect="continue"
    )
    await leave_after_a_token(parts)
    (kept,) = await client.runs.list(tid)
    assert (await until_ended(client, tid, kept["run_id"]))["status"] == "success"
    assert human_texts(await client.threads.get_state(tid)) == ["finish without me"]

    joined = await client.runs.create(
        tid, "agent", input=said("stop when I leave the join"), stream_mode="messages-tuple"
    )
    await until_running(client, tid, joined["run_id"])
    parts = client.runs.join_stream(tid, joined["run_id"], cancel_on_disconnect=True, stream_mode="messages-tuple")
    await leave_after_a_token(parts)
    assert (await until_ended(client, tid, joined["run_id"]))["status"] == "interrupted"


async def left_calls(served, route_end: str) -> float:
    """Calls to the route ending ``route_end`` whose caller left before the answer (499)."""
    metrics = (await served.client.get("/metrics")).text
    counted = [m for m in metrics.splitlines() if m.startswith("appliance_http_requests_total{")]
    lines = [m for m in counted if route_end in m and 'status="499"' in m]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines)


async def test_a_caller_that_stops_waiting_for_a_later_run_frees_the_server(sdk_app):
    """A join or a wait on a run due later ends when its caller leaves, instead of
    holding the server until the run is due (a day, for a join)."""
    client = sdk_app.sdk
    tid = (await client.threads.create())["thread_id"]
    later = await client.runs.create(tid, "agent", input=said("tomorrow"), after_seconds=3600)
    joins, waits = await left_calls(sdk_app, '/join"'), await left_calls(sdk_app, '/runs/wait"')
    async with sdk_app.as_key(sdk_app.admin_key) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"/threads/{tid}/runs/{later['run_id']}/join", timeout=0.3)
        other = (await client.threads.create())["thread_id"]
        with pytest.raises(httpx.ReadTimeout):
            body = {"assistant_id": "agent", "input": said("in a minute"), "after_seconds": 60}
            await http.post(f"/threads/{other}/runs/wait", json=body, timeout=0.3)
    for _ in range(100):
        if await left_calls(sdk_app, '/join"') > joins and await left_calls(sdk_app, '/runs/wait"') > waits:
            break
        await asyncio.sleep(0.05)
    assert await left_calls(sdk_app, '/join"') == joins + 1
    assert await left_calls(sdk_app, '/runs/wait"') == waits + 1
    assert (await client.runs.get(tid, later["run_id"]))["status"] == "pending"  # the run itself stays due
    await client.runs.cancel(tid, later["run_id"], action="rollback")


async def test_a_run_due_later_starts_when_it_is_due(sdk_app):
    """after_seconds: the run starts when it is due, not when the worker next
    looks at the queue of its own accord (every worker_heartbeat_s, 5 s)."""
    client = sdk_app.sdk
    tid = (await client.threads.create())["thread_id"]
    asked = asyncio.get_running_loop().time()
    run = await client.runs.create(tid, "agent", input=said("in a second"), after_seconds=1)
    await client.runs.join(tid, run["run_id"])
    took = asyncio.get_running_loop().time() - asked
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "success"
    assert 1 <= took < 3, took  # before: about 5 s, the worker's next look


async def test_reject_refuses_a_second_run_while_one_runs(slow):
    client = slow.sdk
    tid = (await client.threads.create())["thread_id"]
    first = await client.runs.create(tid, "agent", input=said("first"))
    with pytest.raises(httpx.HTTPStatusError) as refused:
        await client.runs.create(tid, "agent", input=said("second"), multitask_strategy="reject")
    assert refused.value.response.status_code == 409
    await client.runs.join(tid, first["run_id"])
    assert human_texts(await client.threads.get_state(tid)) == ["first"]


async def test_enqueue_runs_one_after_another_in_order(sdk_app):
    client = sdk_app.sdk
    tid = (await client.threads.create())["thread_id"]
    runs = [
        await client.runs.create(tid, "agent", input=said(f"turn {i}"), multitask_strategy="enqueue") for i in range(4)
    ]
    for run in runs:
        await client.runs.join(tid, run["run_id"])
    state = await client.threads.get_state(tid)
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "ai"] * 4
    assert human_texts(state) == [f"turn {i}" for i in range(4)]


async def test_interrupt_stops_the_running_run_and_the_new_one_goes_on_from_its_checkpoints(slow):
    client = slow.sdk
    tid = (await client.threads.create())["thread_id"]
    first = await client.runs.create(tid, "agent", input=said("first, cut short"))
    await until_running(client, tid, first["run_id"])
    second = await client.runs.create(tid, "agent", input=said("second"), multitask_strategy="interrupt")
    await client.runs.join(tid, second["run_id"])
    assert (await client.runs.get(tid, first["run_id"]))["status"] == "interrupted"
    assert (await client.runs.get(tid, second["run_id"]))["status"] == "success"
    state = await client.threads.get_state(tid)
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "human", "ai"]
    assert human_texts(state) == ["first, cut short", "second"]


async def test_rollback_erases_the_running_run_and_its_checkpoints(slow):
    client = slow.sdk
    tid = (await client.threads.create())["thread_id"]
    first = await client.runs.create(tid, "agent", input=said("first, undone"))
    await until_running(client, tid, first["run_id"])
    second = await client.runs.create(tid, "agent", input=said("second"), multitask_strategy="rollback")
    await client.runs.join(tid, second["run_id"])
    assert [r["run_id"] for r in await client.runs.list(tid)] == [second["run_id"]]
    state = await client.threads.get_state(tid)
    assert [m["type"] for m in state["values"]["messages"]] == ["human", "ai"]
    assert human_texts(state) == ["second"]


async def test_breakpoint_pauses_before_the_answer_and_a_run_without_input_resumes(sdk_app):
    client = sdk_app.sdk
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "agent", input=said("pause before you answer"), interrupt_before=["respond"])
    paused = await client.threads.get_state(tid)
    assert paused["next"] == ["respond"]
    assert (await client.threads.get(tid))["status"] == "interrupted"
    values = await client.runs.wait(tid, "agent", input=None)
    assert [m["type"] for m in values["messages"]] == ["human", "ai"]
    assert (await client.threads.get(tid))["status"] == "idle"


async def test_interrupt_in_a_node_asks_a_person_to_review_the_search_and_resume_uses_their_answer(sdk_app):
    client, http = sdk_app.sdk, sdk_app.client
    kb = await new_kb(http)
    assert (await upload(http, kb, "hours.txt", HOURS_TXT.encode())).status_code == 201
    tid = (await client.threads.create(metadata={"knowledge_bases": [kb]}))["thread_id"]
    config = {"configurable": {"review_queries": True}}

    paused = await client.runs.wait(tid, "agent", input=said("When is the office open?"), config=config)
    [question] = paused["__interrupt__"]
    assert question["value"]["review"] == "search_query"
    assert question["value"]["query"] == "When is the office open?"
    assert (await client.threads.get(tid))["status"] == "interrupted"

    values = await client.runs.wait(tid, "agent", command={"resume": "office opening hours"}, config=config)
    assert values["retrievals"][0]["query"] == "office opening hours"
    assert values["citations"] and values["citations"][0]["source"] == "hours.txt"
    assert [m["type"] for m in values["messages"]] == ["human", "ai"]


async def test_a_run_from_an_old_checkpoint_forks_the_thread(sdk_app):
    client = sdk_app.sdk
    tid = (await client.threads.create())["thread_id"]
    await client.runs.wait(tid, "agent", input=said("first"))
    await client.runs.wait(tid, "agent", input=said("second"))
    history = await client.threads.get_history(tid, limit=50)
    after_first = next(s for s in history if human_texts(s) == ["first"] and not s["next"])
    values = await client.runs.wait(
        tid, "agent", input=said("another second"), checkpoint_id=after_first["checkpoint"]["checkpoint_id"]
    )
    assert [m["content"] for m in values["messages"] if m["type"] == "human"] == ["first", "another second"]
    assert human_texts(await client.threads.get_state(tid)) == ["first", "another second"]
    # The old branch is still in the history.
    history = await client.threads.get_history(tid, limit=100)
    assert any(human_texts(s) == ["first", "second"] for s in history)


async def test_a_dropped_stream_resumes_with_last_event_id_and_every_event_arrives_once(slow):
    client = slow.sdk
    # No knowledge bases: a plain conversation, whose answer streams token by token.
    tid = (await client.threads.create(metadata={"knowledge_bases": []}))["thread_id"]
    run = await client.runs.create(tid, "agent", input=said("stream to me"), stream_mode=["messages-tuple", "values"])
    seen: list[tuple[str, str]] = []
    async for part in client.runs.join_stream(tid, run["run_id"], last_event_id="-1"):
        seen.append((part.id, part.event))
        if len(seen) == 4:
            break  # the connection drops here
    last = seen[-1][0]
    async for part in client.runs.join_stream(tid, run["run_id"], last_event_id=last):
        seen.append((part.id, part.event))
    everything = [(p.id, p.event) async for p in client.runs.join_stream(tid, run["run_id"], last_event_id="-1")]
    assert len(everything) > 8
    assert seen == everything  # nothing missed, nothing twice
    assert [e for _, e in everything].count("messages") >= 5


async def test_stateless_run_answers_and_leaves_no_thread_behind(sdk_app):
    client = sdk_app.sdk
    values = await client.runs.wait(None, "agent", input=said("one-off question"))
    assert [m["type"] for m in values["messages"]] == ["human", "ai"]
    parts = [p async for p in client.runs.stream(None, "agent", input=said("one-off stream"))]
    assert parts[0].event == "metadata" and parts[-1].event == "values"
    assert await client.threads.search(metadata={"stateless": True}) == []


async def test_state_update_as_a_node_and_thread_copy(sdk_app):
    client = sdk_app.sdk
    tid = (await client.threads.create(metadata={"team": "ops"}))["thread_id"]
    await client.runs.wait(tid, "agent", input=said("original"))
    update = await client.threads.update_state(
        tid, {"messages": [{"type": "ai", "content": "a correction from a person"}]}, as_node="respond"
    )
    assert update["checkpoint"]["checkpoint_id"]
    state = await client.threads.get_state(tid)
    assert state["values"]["messages"][-1]["content"] == "a correction from a person"

    copy = await client.threads.copy(tid)
    # The copy keeps the metadata, the assistant the first run gave the thread included.
    assert copy["thread_id"] != tid and copy["metadata"] == {"team": "ops", "assistant_id": ASSISTANT_ID}
    copied = await client.threads.get_state(copy["thread_id"])
    assert copied["values"]["messages"] == state["values"]["messages"]
    await client.runs.wait(copy["thread_id"], "agent", input=said("only in the copy"))
    assert "only in the copy" not in human_texts(await client.threads.get_state(tid))


async def test_webhook_gets_the_finished_run(sdk_app):
    received: asyncio.Queue = asyncio.Queue()

    async def hook(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(
            next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        )
        received.put_nowait((head, await reader.readexactly(length)))
        writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(hook, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = sdk_app.sdk
        tid = (await client.threads.create())["thread_id"]
        run = await client.runs.create(
            tid, "agent", input=said("tell me when done"), webhook=f"http://localhost:{port}/done"
        )
        head, body = await asyncio.wait_for(received.get(), 30)
    sent = json.loads(body)
    assert head.startswith(b"POST /done") and sent["run_id"] == run["run_id"] and sent["status"] == "success"


async def test_a_waiting_stream_is_told_its_place_in_the_model_queue(sdk_app):
    client, gate = sdk_app.sdk, sdk_app.runtime.model.gate
    gate.slots = 1
    try:
        thread_id = (await client.threads.create())["thread_id"]

        async def read_all() -> list:
            stream = client.runs.stream(thread_id, "agent", input=said("I wait"), stream_mode="values")
            return [part async for part in stream]

        # The one slot held, as another turn's model call holds it, until the stream waits for it
        # (held by a turn of 0.35 s before, the slot was sometimes free again by the time the
        # stream asked, on a loaded host).
        async with gate.slot():
            reading = asyncio.ensure_future(read_all())
            async with asyncio.timeout(30):
                while not gate.waiting:
                    await asyncio.sleep(0.01)
        parts = await asyncio.wait_for(reading, 30)
    finally:
        gate.slots = 4
    queued = [p.data for p in parts if p.event == "queue"]
    assert queued and queued[0]["position"] == 1
    assert parts[-1].event == "values"
