"""GET /threads/{id}/state of a thread at rest is sent as kept for its latest
checkpoint (store/state_renderings.py), not rebuilt from the checkpoint's
writes; whatever changes the state shows at once, each read first made the
rendering that must not be served again."""

from __future__ import annotations

import uuid

import pytest

from appliance.engine.jsonable import to_json
from tests.support.turns import new_thread, turn, user


@pytest.fixture
def state_builds(scripted_app, monkeypatch):
    """How many times the checkpointer was asked for a checkpoint (each state build asks once)."""
    saver = scripted_app.runtime.checkpointer
    read, asked = saver.aget_tuple, []

    async def counted(config):
        asked.append(config)
        return await read(config)

    monkeypatch.setattr(saver, "aget_tuple", counted)
    return asked


async def read_state(app, tid: str) -> dict:
    """The state over HTTP, checked against one built afresh by the service."""
    response = await app.client.get(f"/threads/{tid}/state")
    assert response.status_code == 200, response.text
    built = await app.runtime.threads.state("default", uuid.UUID(tid))
    assert response.content == to_json(built)
    return response.json()


def texts(state: dict) -> list[str]:
    return [m["content"] for m in state["values"]["messages"] if m["type"] == "human"]


async def test_a_state_at_rest_is_built_once_and_then_sent_as_kept(scripted_app, state_builds):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "first question")
    first = (await client.get(f"/threads/{tid}/state")).json()
    built = len(state_builds)
    again = [(await client.get(f"/threads/{tid}/state")).json() for _ in range(3)]
    assert again == [first] * 3
    assert len(state_builds) == built, "a state at rest was rebuilt on each read"
    # The thread, and a search page with values, take their values from it too.
    assert (await client.get(f"/threads/{tid}")).json()["values"] == first["values"]
    found = await client.post("/threads/search", json={"ids": [tid], "select": ["thread_id", "values"]})
    assert [t["values"] for t in found.json()] == [first["values"]]
    assert len(state_builds) == built, "a thread's values were rebuilt while its state is kept"


async def test_a_new_turn_an_update_a_rollback_and_a_copy_each_show_at_once(scripted_app):
    app, client = scripted_app, scripted_app.client
    tid = await new_thread(client)
    await turn(client, tid, "first question")
    await read_state(app, tid)

    await turn(client, tid, "second question")
    assert texts(await read_state(app, tid)) == ["first question", "second question"]
    thread = (await client.get(f"/threads/{tid}")).json()
    assert thread["values"] == (await read_state(app, tid))["values"]

    updated = await client.post(f"/threads/{tid}/state", json={"values": {"summary": "spoke of two things"}})
    assert updated.status_code == 200, updated.text
    assert (await read_state(app, tid))["values"]["summary"] == "spoke of two things"

    # A third turn rolled back: the thread's latest checkpoint is the update's again.
    await read_state(app, tid)
    third = await client.post(f"/threads/{tid}/runs", json=user("third question"))
    run_id = third.json()["run_id"]
    assert (await client.get(f"/threads/{tid}/runs/{run_id}/join")).status_code == 200
    assert texts(await read_state(app, tid))[-1] == "third question"
    await app.runtime.checkpointer.adelete_run(tid, run_id)
    assert texts(await read_state(app, tid)) == ["first question", "second question"]

    copy = (await client.post(f"/threads/{tid}/copy")).json()["thread_id"]
    copied = await read_state(app, copy)
    assert copied["checkpoint"]["thread_id"] == copy
    assert texts(copied) == ["first question", "second question"]


async def test_a_state_with_a_step_pending_is_built_on_every_read(scripted_app, state_builds):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "pause before you answer", interrupt_before=["respond"])
    paused = await read_state(scripted_app, tid)
    assert paused["next"] == ["respond"]
    built = len(state_builds)
    assert (await client.get(f"/threads/{tid}/state")).json() == paused
    assert len(state_builds) > built
    await turn(client, tid, "", input=None)
    resumed = await read_state(scripted_app, tid)
    assert resumed["next"] == [] and [m["type"] for m in resumed["values"]["messages"]] == ["human", "ai"]


async def test_another_tenants_thread_and_a_deleted_one_have_no_state(scripted_app):
    client, tid = scripted_app.client, await new_thread(scripted_app.client)
    await turn(client, tid, "first question")
    await read_state(scripted_app, tid)
    assert await scripted_app.runtime.threads.renderings.latest([uuid.UUID(tid)], "someone-else") == {}
    assert (await client.delete(f"/threads/{tid}")).status_code == 204
    assert (await client.get(f"/threads/{tid}/state")).status_code == 404
