"""The messages reducer a DeltaChannel replays: add_messages' semantics,
deterministic, and the same list whether writes are applied one by one (as a
run does) or all at once (as a replay does)."""

from __future__ import annotations

import random

import pytest
from langchain_core.messages import AIMessage, HumanMessage, RemoveMessage, ToolMessage
from langgraph.graph.message import REMOVE_ALL_MESSAGES, add_messages

from appliance.agent.messages import merge_messages


def random_writes(rng: random.Random, n: int, *, with_ids: bool) -> list[list]:
    """Writes as nodes make them: new messages, edits of earlier ones, removals."""
    writes, alive, counter = [], [], 0
    for _ in range(n):
        write = []
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.15 and alive:
                write.append(RemoveMessage(id=alive.pop(rng.randrange(len(alive)))))
            elif roll < 0.3 and alive:
                write.append(AIMessage(f"edited {counter}", id=rng.choice(alive)))
            else:
                counter += 1
                kind = rng.choice([HumanMessage, AIMessage])
                mid = f"m{counter}" if with_ids or rng.random() < 0.5 else None
                write.append(kind(f"message {counter}", id=mid))
                if mid:
                    alive.append(mid)
        writes.append(write)
    return writes


@pytest.mark.parametrize("seed", range(20))
def test_with_ids_it_is_add_messages(seed):
    writes = random_writes(random.Random(seed), 40, with_ids=True)
    expected: list = []
    for write in writes:
        expected = add_messages(expected, write)
    assert merge_messages([], writes) == expected


@pytest.mark.parametrize("seed", range(20))
def test_one_by_one_or_all_at_once_gives_the_same_list_and_ids(seed):
    rng = random.Random(seed)
    writes = random_writes(rng, 40, with_ids=False)
    stepwise: list = []
    for write in writes:
        stepwise = merge_messages(stepwise, [write])
    cut = rng.randrange(len(writes))
    in_two = merge_messages(merge_messages([], writes[:cut]), writes[cut:])
    assert merge_messages([], writes) == stepwise == in_two
    assert all(m.id for m in stepwise)
    assert len({m.id for m in stepwise}) == len(stepwise)


def test_a_message_without_an_id_gets_the_same_one_every_replay_and_none_is_changed_in_place():
    question = HumanMessage("what is the cutoff?")
    first = merge_messages([], [[question]])
    again = merge_messages([], [[HumanMessage("what is the cutoff?")]])
    assert first[0].id == again[0].id and question.id is None
    # The same text later in the conversation is another message.
    later = merge_messages(first, [[AIMessage("noon")], [HumanMessage("what is the cutoff?")]])
    assert len({m.id for m in later}) == 3


def test_removals_and_remove_all_behave_as_add_messages():
    base = [HumanMessage("a", id="1"), AIMessage("b", id="2"), HumanMessage("c", id="3")]
    # Removed and given back in one write: kept in its place, as add_messages does.
    write = [RemoveMessage(id="2"), AIMessage("b2", id="2")]
    assert merge_messages(base, [write]) == add_messages(base, write)
    assert merge_messages(base, [[RemoveMessage(id="1")]]) == base[1:]
    tool = ToolMessage("42", tool_call_id="c1", id="4")
    assert merge_messages(base, [[RemoveMessage(id=REMOVE_ALL_MESSAGES), tool]]) == [tool]
    with pytest.raises(ValueError, match="doesn't exist"):
        merge_messages(base, [[RemoveMessage(id="nope")]])
