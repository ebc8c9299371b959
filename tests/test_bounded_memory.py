"""However long a conversation runs, the prompt stays bounded: older turns are
folded into a running summary that every later prompt carries. The model is
scripted and tokens are counted as words, so the assertions are exact."""

from __future__ import annotations

import pytest

from appliance.agent.memory import SUMMARY_HEADING
from tests.support.app import make_settings, serve_app
from tests.support.scripted_model import ScriptedChatModel, is_summary_prompt, scripted_language_model, word_count
from tests.support.turns import new_thread, turn, writes_by_node

BUDGET = 300
TURNS = 200


@pytest.fixture(scope="module")
async def small_context_app(databases, chroma_url, tmp_path_factory):
    chat = ScriptedChatModel()
    settings = make_settings(
        tmp_path_factory.mktemp("memory"),
        databases.create(),
        chroma_url,
        context_token_budget=BUDGET,
        fold_target="0.85",
        summary_max_tokens=40,
    )
    async with serve_app(settings, scripted_language_model(chat)) as served:
        served.chat = chat
        yield served


async def test_prompt_at_turn_200_is_within_1_2x_of_turn_20_and_always_carries_the_summary(small_context_app):
    app, chat = small_context_app, small_context_app.chat
    tid = await new_thread(app.client)
    for n in range(1, TURNS + 1):
        values = await turn(app.client, tid, f"turn {n}: please remember item number {n}")

    # The state holds the latest turns; every turn is still kept, the older ones archived.
    assert values["archived"] + len(values["messages"]) == 2 * TURNS
    assert sum(word_count(m["content"]) for m in values["messages"]) <= BUDGET
    page = (await app.client.get(f"/threads/{tid}/messages", params={"limit": 1000})).json()
    assert page["total"] == 2 * TURNS and page["first"] == 0
    assert [m["content"] for m in page["messages"][::2]] == [
        f"turn {n}: please remember item number {n}" for n in range(1, TURNS + 1)
    ]

    policy = app.runtime.policy
    answer_prompts, sizes, latest_summary, folds = [], [], None, 0
    for prompt, reply in zip(chat.prompts, chat.replies, strict=True):
        if is_summary_prompt(prompt):
            latest_summary, folds = reply.strip(), folds + 1
            continue
        answer_prompts.append(prompt)
        sizes.append(policy.tokens(prompt))
        if latest_summary is not None:
            system = prompt[0].text
            assert SUMMARY_HEADING in system and latest_summary in system, f"answer {len(sizes)} lost the summary"

    assert len(answer_prompts) == TURNS
    assert folds >= 10, "the conversation should have been folded many times"
    assert all(size <= BUDGET for size in sizes), max(sizes)
    turn_20, turn_200 = sizes[19], sizes[199]
    print(f"prompt tokens: turn 20 = {turn_20}, turn 200 = {turn_200}, max = {max(sizes)}, folds = {folds}")
    assert turn_200 <= 1.2 * turn_20, (turn_20, turn_200)
    # And it does not creep: the late prompts are no larger than the early ones after folding began.
    assert max(sizes[100:]) <= max(sizes[20:40])

    state = (await app.client.get(f"/threads/{tid}/state")).json()["values"]
    assert 0 < state["archived"] < 2 * TURNS and state["summary"] == latest_summary
    # Nothing is folded in the window (folded is for threads from before the archive), so it is never written.
    assert "folded" not in state, state["folded"]


async def test_the_newest_message_is_never_folded_away(small_context_app):
    app, chat = small_context_app, small_context_app.chat
    tid = await new_thread(app.client)
    long_message = " ".join(["detail"] * (app.runtime.policy.max_message_tokens() - 5))
    for n in range(6):
        await turn(app.client, tid, f"short {n}")
    await turn(app.client, tid, long_message)
    prompt = chat.answer_prompts()[-1]
    assert prompt[-1].text == long_message
    assert app.runtime.policy.tokens(prompt) <= BUDGET
    assert word_count(prompt[0].text) > 0


async def test_a_plain_turn_that_folds_goes_from_fold_history_to_respond(small_context_app):
    """Nothing for plan to decide (no tools, no knowledge bases): a folding turn
    skips it as a turn that fits does, so a plain conversation never writes
    plan's channels and a fold costs one checkpoint, not two."""
    app = small_context_app
    tid = await new_thread(app.client)
    for n in range(40):
        await turn(app.client, tid, f"turn {n}: please remember item number {n}")
    runs = await writes_by_node(app.runtime, tid)
    folding = [nodes for nodes in runs if "fold_history" in nodes]
    assert len(folding) >= 2, "the conversation should have been folded"
    for nodes in runs:
        assert set(nodes) <= {"__start__", "fold_history", "respond"} and "respond" in nodes, nodes
    async with app.runtime.pool.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT checkpoint FROM checkpoints WHERE thread_id = %s ORDER BY checkpoint_id DESC LIMIT 1", (tid,)
            )
        ).fetchone()
    assert "branch:to:plan" not in row["checkpoint"]["channel_versions"]
    assert "plan" not in row["checkpoint"]["versions_seen"]
