"""A long conversation's state holds its window; the turns folded out of it are
archived and still read back whole: paged, in a copy, in a fork from an old
checkpoint, and for threads written before the archive existed."""

from __future__ import annotations

import uuid
from typing import Annotated

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from tests.support.app import serve_scripted
from tests.support.turns import new_thread, turn

BUDGET = 300


@pytest.fixture(scope="module")
async def app(databases, chroma_url, tmp_path_factory):
    async with serve_scripted(
        tmp_path_factory.mktemp("archive"),
        databases.create(),
        chroma_url,
        delay=0,
        context_token_budget=str(BUDGET),
        fold_target="0.85",
        summary_max_tokens="40",
    ) as served:
        yield served


async def converse(app, tid: str, turns: range) -> dict:
    values = {}
    for n in turns:
        values = await turn(app.client, tid, f"turn {n}: please remember item number {n}")
    return values


async def whole(app, tid: str) -> list[dict]:
    response = await app.client.get(f"/threads/{tid}/messages", params={"limit": 1000})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["first"] == 0 and page["total"] == len(page["messages"])
    return page["messages"]


def questions(messages: list[dict]) -> list[str]:
    return [m["content"] for m in messages if m["type"] == "human"]


async def test_the_state_keeps_a_window_and_the_whole_conversation_reads_back_in_pages(app):
    tid = await new_thread(app.client)
    values = await converse(app, tid, range(1, 61))
    assert values["archived"] > 0 and len(values["messages"]) < 40, "the window should stay bounded"
    assert values["archived"] + len(values["messages"]) == 120
    assert values["messages"][-2]["content"] == "turn 60: please remember item number 60"

    everything = await whole(app, tid)
    assert questions(everything) == [f"turn {n}: please remember item number {n}" for n in range(1, 61)]
    assert [m["id"] for m in everything[-len(values["messages"]) :]] == [m["id"] for m in values["messages"]]

    # Pages from the end, each ending where the last began.
    pages, before = [], None
    while before != 0:
        params = {"limit": 25} | ({"before": before} if before is not None else {})
        page = (await app.client.get(f"/threads/{tid}/messages", params=params)).json()
        assert page["total"] == 120 and len(page["messages"]) == min(25, before if before is not None else 120)
        pages.insert(0, page["messages"])
        before = page["first"]
    assert [m["id"] for page in pages for m in page] == [m["id"] for m in everything]

    for bad in ({"limit": 0}, {"before": -1}, {"limit": "many"}):
        response = await app.client.get(f"/threads/{tid}/messages", params=bad)
        assert response.status_code in (400, 422), (bad, response.text)
        assert next(iter(bad)) in response.text


async def test_a_copy_and_a_fork_read_the_archive_as_it_was_at_their_checkpoint(app):
    tid = await new_thread(app.client)
    await converse(app, tid, range(1, 51))
    # The end of the turn whose archive is the oldest but one, to fork from.
    history = (await app.client.get(f"/threads/{tid}/history", params={"limit": 1000})).json()
    ends = [s for s in history if not s["next"] and s["values"].get("archived")]
    heads = sorted({s["values"]["archived"] for s in ends})
    assert len(heads) >= 3, "the conversation should have been archived several times"
    fork = next(s for s in reversed(ends) if s["values"]["archived"] == heads[0])
    asked = len(questions(fork["values"]["messages"])) + heads[0] // 2

    copy = (await app.client.post(f"/threads/{tid}/copy")).json()["thread_id"]
    assert await whole(app, copy) == await whole(app, tid)

    forked = await turn(
        app.client, copy, "a question asked on the fork", checkpoint_id=fork["checkpoint"]["checkpoint_id"]
    )
    assert forked["archived"] >= heads[0]
    conversation = questions(await whole(app, copy))
    assert conversation == [
        *(f"turn {n}: please remember item number {n}" for n in range(1, asked + 1)),
        "a question asked on the fork",
    ]
    # The original is untouched, and deleting it leaves the copy whole.
    assert len(questions(await whole(app, tid))) == 50
    assert (await app.client.delete(f"/threads/{tid}")).status_code == 204
    async with app.runtime.pool.connection() as conn:
        archived = await conn.execute("SELECT count(*) AS n FROM message_archive WHERE thread_id = %s", (tid,))
        assert (await archived.fetchone())["n"] == 0
    assert questions(await whole(app, copy)) == conversation


async def test_an_openai_client_resending_a_long_history_adds_only_its_new_turn(app):
    conversation = {"X-Conversation-Id": f"long-{uuid.uuid4().hex[:6]}"}
    history: list[dict] = []
    for n in range(1, 41):
        history.append({"role": "user", "content": f"turn {n}: please remember item number {n}"})
        response = await app.client.post(
            "/v1/chat/completions", json={"model": "agent", "messages": history}, headers=conversation
        )
        assert response.status_code == 200, response.text
        body = response.json()
        history.append({"role": "assistant", "content": body["choices"][0]["message"]["content"]})
    tid = body["conversation_id"]
    state = (await app.client.get(f"/threads/{tid}/state")).json()["values"]
    assert state["archived"] > 0, "the history sent should reach into the archive"
    # Matched against the whole conversation, archive and window: nothing added twice.
    assert [(m["type"], m["content"]) for m in await whole(app, tid)] == [
        ("human" if m["role"] == "user" else "ai", m["content"]) for m in history
    ]


class StateBeforeTheArchive(TypedDict, total=False):
    """The agent's state as threads were written before the archive: every
    message in one list (a plain reducer), the summary covering messages[:folded]."""

    messages: Annotated[list[AnyMessage], add_messages]
    summary: str
    folded: int


async def test_a_thread_written_before_the_archive_reads_and_goes_on(app):
    tid = await new_thread(app.client)
    old = StateGraph(StateBeforeTheArchive)
    old.add_node("respond", lambda state: {})
    old.add_edge(START, "respond")
    old.add_edge("respond", END)
    earlier = [
        message for n in range(1, 21) for message in (HumanMessage(f"old question {n}"), AIMessage(f"old answer {n}"))
    ]
    config = {"configurable": {"thread_id": tid}}
    await old.compile(checkpointer=app.runtime.checkpointer).ainvoke(
        {"messages": earlier, "summary": "the user asked old questions", "folded": 10}, config
    )

    state = (await app.client.get(f"/threads/{tid}/state")).json()["values"]
    assert len(state["messages"]) == 40 and state["folded"] == 10 and state.get("archived") is None
    assert [m["content"] for m in await whole(app, tid)] == [m.text for m in earlier]

    values = await converse(app, tid, range(1, 31))
    assert values["archived"] > 0 and values["folded"] == 0
    assert questions(await whole(app, tid)) == [
        *(f"old question {n}" for n in range(1, 21)),
        *(f"turn {n}: please remember item number {n}" for n in range(1, 31)),
    ]


async def test_where_the_window_sits_is_the_appliances_to_change(app):
    tid = await new_thread(app.client)
    await converse(app, tid, range(1, 3))
    for values in ({"archived": 0}, {"archive_head": None}):
        response = await app.client.post(f"/threads/{tid}/state", json={"values": values})
        assert response.status_code == 422, response.text
        assert f"values.{next(iter(values))}" in response.json()["detail"]
