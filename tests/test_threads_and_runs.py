"""Threads and runs through the HTTP API, in the Agent Server's shapes."""

from __future__ import annotations

import asyncio
import time

from appliance.cli.remote import read_events
from tests.support.app import serve_scripted
from tests.support.turns import checkpoint_count, new_thread, stream, turn, user


async def test_thread_lifecycle_create_read_patch_search_delete(scripted_app):
    client = scripted_app.client
    created = (await client.post("/threads", json={"metadata": {"team": "ops", "topic": "vpn"}})).json()
    assert set(created) >= {"thread_id", "created_at", "updated_at", "metadata", "status", "values"}
    assert created["status"] == "idle" and created["metadata"] == {"team": "ops", "topic": "vpn"}
    tid = created["thread_id"]

    patched = (await client.patch(f"/threads/{tid}", json={"metadata": {"topic": "wifi"}})).json()
    assert patched["metadata"] == {"team": "ops", "topic": "wifi"}

    found = (await client.post("/threads/search", json={"metadata": {"topic": "wifi"}})).json()
    assert [t["thread_id"] for t in found] == [tid]

    await turn(client, tid, "hello")
    assert await checkpoint_count(scripted_app.runtime, tid) > 0
    assert (await client.delete(f"/threads/{tid}")).status_code == 204
    assert (await client.get(f"/threads/{tid}")).status_code == 404
    assert await checkpoint_count(scripted_app.runtime, tid) == 0


async def test_creating_an_existing_thread_conflicts_unless_do_nothing(scripted_app):
    client = scripted_app.client
    tid = await new_thread(client)
    again = await client.post("/threads", json={"thread_id": tid})
    assert again.status_code == 409 and "if_exists" in again.json()["detail"]
    reused = await client.post("/threads", json={"thread_id": tid, "if_exists": "do_nothing"})
    assert reused.status_code == 200 and reused.json()["thread_id"] == tid


async def test_clients_send_only_the_new_message_and_the_server_keeps_every_turn(scripted_app):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "first question")
    values = await turn(client, tid, "second question")
    kinds = [(m["type"], m["content"]) for m in values["messages"]]
    assert [k for k, _ in kinds] == ["human", "ai", "human", "ai"]
    assert kinds[0][1] == "first question" and kinds[2][1] == "second question"
    # The model saw the first turn while answering the second.
    last_prompt = scripted_app.chat.answer_prompts()[-1]
    assert "first question" in [m.text for m in last_prompt]


async def test_a_wait_reads_the_state_once_and_answers_with_the_state_committed(scripted_app, monkeypatch):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "first question")
    saver = scripted_app.runtime.checkpointer
    reads = []
    read = saver.aget_tuple

    async def counted(config):
        reads.append(config)
        return await read(config)

    monkeypatch.setattr(saver, "aget_tuple", counted)
    values = await turn(client, tid, "second question")
    # The run reads the thread's state as it starts; the answer is its final
    # state, handed over by the run, not read back after it.
    assert len(reads) == 1, reads
    monkeypatch.undo()
    assert values == (await client.get(f"/threads/{tid}/state")).json()["values"]


async def test_a_waits_answer_is_encoded_in_one_pass_as_the_streams_values_are(scripted_app, monkeypatch):
    """The final values go straight to JSON (stream_json), not first copied into
    a plain tree of dicts message by message; the answer is the same state."""
    from appliance.services import runs

    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "first question")
    copied, plain_tree = [], runs.jsonable

    def copying(value):
        copied.append(value)
        return plain_tree(value)

    monkeypatch.setattr(runs, "jsonable", copying)
    values = await turn(client, tid, "second question")
    latest = (await client.get(f"/threads/{tid}/runs")).json()[0]["run_id"]
    joined = await client.get(f"/threads/{tid}/runs/{latest}/join")
    assert [c for c in copied if isinstance(c, dict)] == [], "the final values were copied into plain dicts"
    monkeypatch.undo()
    assert values == joined.json() == (await client.get(f"/threads/{tid}/state")).json()["values"]
    assert [m["content"] for m in values["messages"] if m["type"] == "human"] == ["first question", "second question"]


async def test_a_turn_on_an_idle_thread_starts_where_it_was_asked_without_a_trip_through_the_queue(
    scripted_app, monkeypatch
):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "a first turn")
    store, asked = scripted_app.runtime.worker.store, []
    for name in ("claim", "status"):
        original = getattr(store, name)

        async def counted(*args, _name=name, _original=original, **kwargs):
            asked.append(_name)
            return await _original(*args, **kwargs)

        monkeypatch.setattr(store, name, counted)
    await turn(client, tid, "waited for")
    await stream(client, tid, user("streamed") | {"stream_mode": ["values"]})
    await asyncio.sleep(0.3)  # a look at the queue after the end would come now
    # Created running on this process's worker, in the transaction that
    # queued it; its waiter told of its end by the run itself.
    assert asked == []
    runs = (await client.get(f"/threads/{tid}/runs")).json()
    assert [r["status"] for r in runs] == ["success"] * 3


async def test_a_threads_first_run_names_its_assistant_in_the_transaction_that_queues_it(scripted_app, monkeypatch):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    store, merged = scripted_app.runtime.runs.thread_service.store, []
    original = store.merge_metadata

    async def counted(*args, **kwargs):
        merged.append(args)
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, "merge_metadata", counted)
    await turn(client, tid, "a first turn")
    [run] = (await client.get(f"/threads/{tid}/runs")).json()
    assert (await client.get(f"/threads/{tid}")).json()["metadata"]["assistant_id"] == run["assistant_id"]
    assert merged == []  # no second write of the thread after the run's

    # The first assistant stays the thread's; a run naming another does not replace it.
    other = (await client.post("/assistants", json={"graph_id": "agent", "name": "other"})).json()
    await client.post(f"/threads/{tid}/runs/wait", json=user("with another") | {"assistant_id": other["assistant_id"]})
    assert (await client.get(f"/threads/{tid}")).json()["metadata"]["assistant_id"] == run["assistant_id"]


async def test_runs_that_find_no_free_slot_wait_in_the_queue_and_start_as_one_frees(databases, chroma_url, tmp_path):
    async with serve_scripted(tmp_path, databases.create(), chroma_url, delay=0.05, worker_slots="1") as app:
        threads = [await new_thread(app.client) for _ in range(3)]
        started = time.perf_counter()
        answers = await asyncio.gather(*(turn(app.client, t, "hello") for t in threads))
        elapsed = time.perf_counter() - started
        look_every = app.runtime.settings.worker_heartbeat_s
    assert all(a["messages"][-1]["type"] == "ai" for a in answers)
    # One slot: one run at a time, the next taken from the queue as the one
    # before it ends, not at the worker's next look at the queue.
    assert elapsed < look_every, elapsed


async def test_a_wait_records_only_the_stream_events_it_asks_for(scripted_app):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "a first turn")
    await turn(client, tid, "a second turn", stream_mode=["values"])

    async def recorded(run_id: str) -> list[str]:
        async with scripted_app.runtime.pool.connection() as conn:
            rows = await conn.execute("SELECT event FROM run_events WHERE run_id = %s ORDER BY seq", (run_id,))
            return [r["event"] for r in await rows.fetchall()]

    first, second = sorted((await client.get(f"/threads/{tid}/runs")).json(), key=lambda r: r["created_at"])
    # Values at every step are the whole window each time: kept only for a caller who asked.
    assert "values" not in await recorded(first["run_id"])
    assert (await recorded(second["run_id"])).count("values") >= 2
    assert first["kwargs"]["stream_mode"] == [] and second["kwargs"]["stream_mode"] == ["values"]


async def test_stream_sends_metadata_first_then_tokens_as_they_are_made(scripted_app):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    body = user("stream please") | {"stream_mode": ["messages-tuple", "values", "updates"]}
    arrivals: list[tuple[float, str]] = []
    async with client.stream("POST", f"/threads/{tid}/runs/stream", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["content-location"].startswith(f"/threads/{tid}/runs/")
        async for event, _ in read_events(response.aiter_lines()):
            arrivals.append((time.monotonic(), event))
    events = [e for _, e in arrivals]
    assert events[0] == "metadata"
    token_times = [t for t, e in arrivals if e == "messages"]
    assert len(token_times) >= 5
    # Tokens were spread over the answer's production (the model waits 10 ms a word).
    assert token_times[-1] - token_times[0] > 0.03
    # The answering node's update (the last one) follows its tokens.
    last_update = len(events) - 1 - events[::-1].index("updates")
    assert last_update > events.index("messages")
    assert events[-1] == "values"


async def test_stream_events_carry_message_chunks_and_final_values(scripted_app):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    events = await stream(client, tid, user("hi") | {"stream_mode": ["messages-tuple", "values"]})
    chunks = [data for event, data in events if event == "messages"]
    text = "".join(chunk["content"] for chunk, _meta in chunks)
    assert all(meta["langgraph_node"] == "respond" for _c, meta in chunks)
    final = [data for event, data in events if event == "values"][-1]
    assert final["messages"][-1]["content"] == text


async def test_state_and_history_read_back_every_checkpoint(scripted_app):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "one")
    await turn(client, tid, "two")
    state = (await client.get(f"/threads/{tid}/state")).json()
    assert [m["content"] for m in state["values"]["messages"]][::2] == ["one", "two"]
    assert state["next"] == [] and state["checkpoint"]["thread_id"] == tid

    history = (await client.get(f"/threads/{tid}/history", params={"limit": 100})).json()
    assert history[0]["checkpoint"] == state["checkpoint"]
    assert len(history) == await checkpoint_count(scripted_app.runtime, tid)
    steps = [h["metadata"]["step"] for h in history]
    assert steps == sorted(steps, reverse=True)

    older = history[3]["checkpoint"]["checkpoint_id"]
    at = (await client.get(f"/threads/{tid}/state/{older}")).json()
    assert at["checkpoint"]["checkpoint_id"] == older
    page = (await client.post(f"/threads/{tid}/history", json={"limit": 2, "before": {"checkpoint_id": older}})).json()
    assert [h["checkpoint"]["checkpoint_id"] for h in page] == [h["checkpoint"]["checkpoint_id"] for h in history[4:6]]


async def test_reject_strategy_refuses_a_second_run_on_a_busy_thread(scripted_app):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    scripted_app.chat.delay = 0.05
    try:
        first = asyncio.create_task(turn(client, tid, "slow one"))
        await asyncio.sleep(0.15)
        second = await client.post(
            f"/threads/{tid}/runs/wait", json=user("too soon") | {"multitask_strategy": "reject"}
        )
        assert second.status_code == 409
        values = await first
    finally:
        scripted_app.chat.delay = 0.01
    assert [m["content"] for m in values["messages"] if m["type"] == "human"] == ["slow one"]


async def test_enqueue_strategy_runs_concurrent_turns_one_at_a_time_in_order(scripted_app):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    texts = [f"message {i}" for i in range(5)]
    tasks = []
    for text in texts:
        tasks.append(asyncio.create_task(turn(client, tid, text, multitask_strategy="enqueue")))
        await asyncio.sleep(0.02)  # arrival order
    await asyncio.gather(*tasks)
    state = (await client.get(f"/threads/{tid}/state")).json()
    messages = state["values"]["messages"]
    assert [m["type"] for m in messages] == ["human", "ai"] * 5
    assert [m["content"] for m in messages[::2]] == texts
    assert (await client.get(f"/threads/{tid}")).json()["status"] == "idle"


async def test_a_dropped_stream_cancels_its_run_and_leaves_no_half_turn(scripted_app):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "kept")
    before = await checkpoint_count(scripted_app.runtime, tid)
    scripted_app.chat.delay = 0.05
    try:
        async with client.stream(
            "POST", f"/threads/{tid}/runs/stream", json=user("dropped") | {"stream_mode": "messages-tuple"}
        ) as response:
            async for event, _ in read_events(response.aiter_lines()):
                if event == "messages":
                    break  # leave after the first token
        for _ in range(100):
            if (await client.get(f"/threads/{tid}")).json()["status"] == "idle":
                break
            await asyncio.sleep(0.05)
    finally:
        scripted_app.chat.delay = 0.01
    state = (await client.get(f"/threads/{tid}/state")).json()
    assert [m["content"] for m in state["values"]["messages"] if m["type"] == "human"] == ["kept"]
    assert await checkpoint_count(scripted_app.runtime, tid) == before
