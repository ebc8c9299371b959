"""The prompts of the retrieval nodes: pure functions from state to messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

from appliance.knowledge.sources import format_sources

GRADE_CHOICES = ("yes", "no")

GRADE_INSTRUCTIONS = (
    "You check search results. Answer 'yes' if the passage contains information that helps answer "
    "the question, 'no' if it does not."
)
REWRITE_INSTRUCTIONS = (
    "The search for this question found nothing relevant. Write a different search query for the "
    "same question: use the key terms, their synonyms and likely technical words. Reply with the "
    "query only, on one line."
)
ANSWER_INSTRUCTIONS = (
    "Answer the question in one or two sentences, using only the numbered sources below and their "
    "own words where you can. End each sentence with its source number in brackets, like [1]."
)


def grade_prompt(question: str, passage: dict[str, Any]) -> list[BaseMessage]:
    return [
        SystemMessage(GRADE_INSTRUCTIONS),
        HumanMessage(f"Passage:\n{passage['text']}\n\nQuestion: {question}\n\nDoes the passage help? yes or no?"),
    ]


def rewrite_prompt(question: str, tried: Sequence[str]) -> list[BaseMessage]:
    queries = "\n".join(f"- {q}" for q in tried)
    return [
        SystemMessage(REWRITE_INSTRUCTIONS),
        HumanMessage(f"Question: {question}\n\nQueries already tried:\n{queries}\n\nNew query:"),
    ]


def grounded_question(question: str, passages: Sequence[dict[str, Any]]) -> str:
    """The user's question as the answering model sees it: sources first."""
    return f"{ANSWER_INSTRUCTIONS}\n\nSources:\n{format_sources(passages)}\n\nQuestion: {question}"


def clean_query(text: str, fallback: str) -> str:
    """The first line of a rewrite, without the quotes and labels small models add."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    for label in ("new query:", "query:", "search query:"):
        if line.lower().startswith(label):
            line = line[len(label) :].strip()
    line = line.strip("\"'` ")
    return line or fallback


def refusal(tried: Sequence[str]) -> str:
    searched = "; ".join(f"'{q}'" for q in tried)
    return (
        "The documents available to this conversation do not cover this, so I will not guess. "
        f"(Searched for: {searched}.) Try other words, or add a document that holds the answer."
    )
