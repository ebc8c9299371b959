"""A scripted model for the knowledge tests that plays each role the graph asks of it.

Decisions are deterministic so tests can assert exact paths through the
graph: a greeting is routed to chat, anything else to search; a passage is
graded relevant when it shares a content word with the question; a question
in ``distrust_first_search`` has its first search graded irrelevant, so the
graph must rewrite it (to ``rewrites[question]``) and search again. Asked
RECALL, it answers with the first user message of its prompt, so tests can
prove what the conversation's memory carried.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from langchain_core.messages import BaseMessage

from tests.support.scripted_model import prompt_kind

STOPWORDS = {
    "what", "which", "where", "when", "there", "their", "does", "many", "much", "with", "from", "this", "that",
    "have", "into", "about", "would", "could", "should", "your", "they", "them", "were", "been", "will",
}  # fmt: skip
ANSWER = "From the documents: the answer is in the first source [1]."
RECALL = "What was my first message?"


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 3 and w not in STOPWORDS}


def question_in(prompt_text: str) -> str:
    return prompt_text.rsplit("Question: ", 1)[1].split("\n", 1)[0].strip()


@dataclass
class Librarian:
    rewrites: dict[str, str] = field(default_factory=dict)
    distrust_first_search: set[str] = field(default_factory=set)
    rewritten: set[str] = field(default_factory=set)

    def __call__(self, messages: list[BaseMessage], calls: int) -> str:
        kind, text = prompt_kind(messages), messages[-1].text
        if kind == "route":
            return "chat" if "hello" in text.lower() else "search"
        if kind == "grade":
            passage, question = text.split("Passage:\n", 1)[1].rsplit("\n\nQuestion: ", 1)[0], question_in(text)
            if question in self.distrust_first_search and question not in self.rewritten:
                return "no"
            return "yes" if content_words(passage) & content_words(question) else "no"
        if kind == "rewrite":
            question = question_in(text)
            self.rewritten.add(question)
            return self.rewrites.get(question, question)
        if kind == "summary":
            return "summary of earlier turns"
        if "Sources:" in text:
            return ANSWER
        if text == RECALL:
            first = next((m.text for m in messages if m.type == "human"), "")
            return f"Your first message was: {first}"
        return f"Hello! (reply {calls})"
