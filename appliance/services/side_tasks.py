"""Whether an OpenAI client's request is a task about a conversation, decided by rules.

Chat clients ask their model for their own background work: a chat's title,
its tags, follow-up questions. Such a request is not a turn of the
conversation: searching documents for it answers the wrong question, and
keeping it in the conversation's thread would put turns there the user never
had. A request is such a side task when it brings no question of its own:

- only system (or developer) messages: the task is their text;
- or one user message that holds the conversation itself: it quotes the
  named conversation's last exchange (its last question and the opening of
  its last answer), or it holds a transcript, lines labelled by speaker,
  a user's and an assistant's.

Neither rule reads the task's wording, so any client's prompts are
recognised, in any language. A person who pastes a chat log and asks about it
is answered the same way: by the model alone, which is what that asks for.
"""

from __future__ import annotations

import re
from typing import Any

# A speaker's label opening a line: "USER:", "### Assistant:", "||>Response:", "**AI**:".
_LABEL = re.compile(r"^[^\w\n]{0,6}(\w+)[^\w\n:]{0,3}:", re.MULTILINE)
USER_LABELS = frozenset({"user", "human", "question", "me"})
ASSISTANT_LABELS = frozenset({"assistant", "ai", "response", "answer", "bot", "model", "chatbot"})
# How much of the last answer a request must quote: clients cut long answers short.
QUOTED_ANSWER_WORDS = 12
_MARKERS = re.compile(r"\s*\[\d{1,2}\]")


def is_side_task(sent: list[dict[str, Any]], history: list[dict[str, str]] | None) -> bool:
    """``sent``: the request's turns (``client_messages``, no system message);
    ``history``: the named conversation's turns, or None without one."""
    if not sent:
        return True  # only system messages
    if len(sent) != 1 or sent[0]["role"] != "user":
        return False
    message = sent[0]["content"]
    return holds_transcript(message) or (history is not None and quotes_last_exchange(message, history))


def holds_transcript(text: str) -> bool:
    labels = {m.group(1).casefold() for m in _LABEL.finditer(text)}
    return bool(labels & USER_LABELS) and bool(labels & ASSISTANT_LABELS)


def may_quote(text: str) -> bool:
    """Whether a message is long enough to quote an exchange: the conversation
    need not be read for the short messages most turns are."""
    return len(words(text).split()) > QUOTED_ANSWER_WORDS


def quotes_last_exchange(text: str, history: list[dict[str, str]]) -> bool:
    question = next((t["content"] for t in reversed(history) if t["role"] == "user"), None)
    answer = next((t["content"] for t in reversed(history) if t["role"] == "assistant" and t["content"]), None)
    if question is None or answer is None:
        return False
    said = f" {words(text)} "
    opening = " ".join(words(answer).split()[:QUOTED_ANSWER_WORDS])
    return f" {words(question)} " in said and f" {opening} " in said


def words(text: str) -> str:
    """Its words alone, in order: no citation marker, case, punctuation or spacing."""
    return " ".join(re.findall(r"\w+", _MARKERS.sub("", text).casefold()))


def plain(text: str) -> str:
    """Text as compared: without citation markers, case or spacing (clients re-render answers)."""
    return " ".join(_MARKERS.sub("", text).casefold().split())
