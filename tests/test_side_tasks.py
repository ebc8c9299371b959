"""The rules that tell a client's background task from a turn of its conversation."""

from __future__ import annotations

import pytest

from appliance.services.side_tasks import holds_transcript, is_side_task, quotes_last_exchange

HISTORY = [
    {"role": "user", "content": "Where is the VPN profile?"},
    {"role": "assistant", "content": "The VPN profile is on the intranet under IT > Remote access [1]."},
]


@pytest.mark.parametrize(
    "text",
    [
        "USER: Where is it?\nASSISTANT: On the intranet.",
        '||>User:\n"hello"\n||>Response:\n"hi"',
        "### Human: a\n### AI: b",
        "**user**: a\n**assistant**: b",
    ],
)
def test_a_transcript_is_lines_labelled_by_both_speakers(text):
    assert holds_transcript(text)


@pytest.mark.parametrize(
    "text",
    [
        "User: admin. Why can't I log in?",  # one speaker only
        "What does the assistant: field in the config mean?",  # a label not at a line's start
        "Where is the VPN profile?",
    ],
)
def test_a_question_is_not_a_transcript(text):
    assert not holds_transcript(text)


def test_quoting_the_last_exchange_needs_its_question_and_its_answer():
    quoted = 'Tags for "where is the vpn profile?" — "The VPN profile is on the intranet under IT > Remote access"'
    assert quotes_last_exchange(quoted, HISTORY)
    assert not quotes_last_exchange("Where is the VPN profile?", HISTORY)  # asked again: a turn
    assert not quotes_last_exchange("You said: The VPN profile is on the intranet under IT. Which page?", HISTORY)
    assert not quotes_last_exchange(quoted, [])


def test_only_system_messages_or_one_message_about_the_conversation_is_a_side_task():
    assert is_side_task([], None)
    about = {"role": "user", "content": "USER: a\nASSISTANT: b"}
    assert is_side_task([about], None)
    assert not is_side_task([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}, about], None)
    assert not is_side_task([{"role": "tool", "content": "USER: a\nASSISTANT: b", "tool_call_id": "c"}], None)
