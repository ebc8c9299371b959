"""A process whose lane lets one turn work at a time (appliance/pacing.py)
still serves many turns at once: a turn steps out of the lane while the model
works, and a request hands its place to the run it made (a waiting request
that kept it would leave its own run no way in)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from appliance.services.runs import RunSpec
from tests.support.app import make_settings, serve_app
from tests.support.process import NO_RATE_LIMITS
from tests.support.scripted_model import ScriptedChatModel, scripted_language_model
from tests.support.turns import new_thread, stream, user

TURNS_EACH_WAY = 4


class CountingChatModel(ScriptedChatModel):
    """Counts the calls streaming at once."""

    in_flight: int = 0
    most_at_once: int = 0

    async def _astream(self, messages, stop=None, run_manager=None, **kwargs):
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        try:
            async for chunk in super()._astream(messages, stop, run_manager, **kwargs):
                yield chunk
        finally:
            self.in_flight -= 1


@pytest.fixture(scope="module")
async def narrow_lane_app(databases, chroma_url, tmp_path_factory):
    chat = CountingChatModel(delay=0.1)
    settings = make_settings(
        tmp_path_factory.mktemp("lane"),
        databases.create(),
        chroma_url,
        turn_lane_width="1",
        model_concurrency="16",
        **NO_RATE_LIMITS,  # twelve turns of one key at once
    )
    async with serve_app(settings, scripted_language_model(chat)) as served:
        served.chat = chat
        yield served


async def test_turns_through_a_lane_one_wide_all_answer_and_the_model_serves_them_at_once(narrow_lane_app):
    app, chat = narrow_lane_app, narrow_lane_app.chat
    assert app.runtime.lane.width == 1
    threads = [await new_thread(app.client) for _ in range(3 * TURNS_EACH_WAY)]
    waits, streams, joins = (threads[i * TURNS_EACH_WAY : (i + 1) * TURNS_EACH_WAY] for i in range(3))

    async def wait(thread_id: str) -> str:
        response = await app.client.post(f"/threads/{thread_id}/runs/wait", json=user("hello"))
        assert response.status_code == 200, response.text
        return response.json()["messages"][-1]["content"]

    async def streamed(thread_id: str) -> str:
        events = await stream(app.client, thread_id, user("hello") | {"stream_mode": ["values"]})
        assert events[-1][0] == "values", events[-1]
        return events[-1][1]["messages"][-1]["content"]

    async def background_then_join(thread_id: str) -> str:
        created = await app.client.post(f"/threads/{thread_id}/runs", json=user("hello"))
        assert created.status_code == 200, created.text
        joined = await app.client.get(f"/threads/{thread_id}/runs/{created.json()['run_id']}/join")
        assert joined.status_code == 200, joined.text
        return joined.json()["messages"][-1]["content"]

    answers = await asyncio.wait_for(
        asyncio.gather(*map(wait, waits), *map(streamed, streams), *map(background_then_join, joins)), timeout=60
    )
    assert all(answer.startswith("reply-") for answer in answers), answers
    # One turn at work at a time, yet the model's answers overlapped: each turn
    # was out of the lane while it waited for them (one after another would take 12 x 0.7 s).
    assert chat.most_at_once >= 2
    assert app.runtime.lane.busy == 0 and app.runtime.lane.waiting == 0


async def test_a_client_slow_to_send_its_body_holds_no_place_in_the_lane(narrow_lane_app):
    app = narrow_lane_app
    slow_thread, thread = await new_thread(app.client), await new_thread(app.client)
    body = json.dumps(user("sent slowly")).encode()
    host, port = app.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST /threads/{slow_thread}/runs/wait HTTP/1.1\r\nHost: {host}\r\nx-api-key: {app.admin_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body[:10]
    )
    await writer.drain()
    try:
        await asyncio.sleep(0.2)  # the slow request is in the server, its body not all there
        # The lane is one wide: a turn behind the slow client would wait for all its body.
        response = await asyncio.wait_for(
            app.client.post(f"/threads/{thread}/runs/wait", json=user("hello")), timeout=30
        )
        assert response.status_code == 200, response.text
        writer.write(body[10:])
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=30)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    finally:
        writer.close()
    assert app.runtime.lane.busy == 0


async def test_metrics_show_the_lane(narrow_lane_app):
    text = (await narrow_lane_app.client.get("/metrics")).text
    assert "appliance_turns_at_work 0.0" in text
    assert "appliance_turns_waiting 0.0" in text


async def test_a_run_cancelled_while_it_waits_in_line_stops_as_any_run(narrow_lane_app):
    app = narrow_lane_app
    thread = await new_thread(app.client)
    lane, holding, release = app.runtime.lane, asyncio.Event(), asyncio.Event()

    async def hold_the_one_place() -> None:
        async with lane.turn():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold_the_one_place())
    await holding.wait()
    try:
        spec = RunSpec(input=user("hello")["input"])
        run = await app.runtime.runs.create("default", uuid.UUID(thread), spec, key_id=None)
        for _ in range(100):  # started here, the run waits for the place
            if lane.waiting:
                break
            await asyncio.sleep(0.01)
        assert lane.waiting == 1
        cancelled = await app.client.post(f"/threads/{thread}/runs/{run.run_id}/cancel")
        assert cancelled.status_code in (200, 202, 204), cancelled.text
        joined = await asyncio.wait_for(app.client.get(f"/threads/{thread}/runs/{run.run_id}/join"), timeout=30)
        assert joined.status_code == 200, joined.text
        assert lane.waiting == 0  # it left the line
    finally:
        release.set()
        await holder
    record = (await app.client.get(f"/threads/{thread}/runs/{run.run_id}")).json()
    assert record["status"] == "interrupted", record
    # The thread is free again: the next turn runs.
    response = await app.client.post(f"/threads/{thread}/runs/wait", json=user("again"))
    assert response.status_code == 200, response.text
