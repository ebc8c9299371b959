"""A scripted model for the knowledge tests that plays each role the graph asks of it.

Decisions are deterministic so tests can assert exact paths through the
graph: a greeting is routed to chat, anything else to search; a passage is
graded relevant when it shares a content word with the question; a question
in ``distrust_first_search`` has its first search graded irrelevant, so the
graph must rewrite it (to ``rewrites[question]``) and search again. Asked
to answer from sources, it quotes the sentence of the first source that
shares most words with the question, with its marker (an answer its sources
support); with ``unsupported`` set it answers with a claim no source makes.
Asked RECALL, it answers with the first user message of its prompt, so tests
can prove what the conversation's memory carried.
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
UNSUPPORTED = "The warehouse was built by the moon people in 1850 [1]."
RECALL = "What was my first message?"
# Asked MARKDOWN, the librarian answers with Markdown that carries live HTML.
MARKDOWN = "Show me some markdown"
MARKDOWN_REPLY = (
    "Steps:\n\n- first **bold**\n- second\n\n```\nprint(1 < 2)\n```\n\n"
    "<script>window.pwned = 'script'</script> <img src=x onerror=\"window.pwned = 'img'\">\n\n"
    "Then [click](javascript:window.pwned='link') here."
)


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 3 and w not in STOPWORDS}


def question_in(prompt_text: str) -> str:
    return prompt_text.rsplit("Question: ", 1)[1].split("\n", 1)[0].strip()


def quote(prompt_text: str) -> str:
    """The sentence of source [1] with most of the question's words, cited."""
    first = prompt_text.split("Sources:\n", 1)[1].split("\n\n[2] (", 1)[0].rsplit("\n\nQuestion: ", 1)[0]
    body = first.split("\n", 1)[1]
    wanted = content_words(question_in(prompt_text))
    best = max(re.split(r"(?<=[.!?])\s+", body), key=lambda s: len(content_words(s) & wanted))
    return f"{best} [1]"


def answer_to(question: str, passage: str) -> str:
    """What the librarian answers when ``passage`` is source [1]."""
    return quote(f"Sources:\n[1] (x)\n{passage}\n\nQuestion: {question}")


@dataclass
class Librarian:
    rewrites: dict[str, str] = field(default_factory=dict)
    distrust_first_search: set[str] = field(default_factory=set)
    rewritten: set[str] = field(default_factory=set)
    unsupported: bool = False

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
            return UNSUPPORTED if self.unsupported else quote(text)
        if text == MARKDOWN:
            return MARKDOWN_REPLY
        if text == RECALL:
            first = next((m.text for m in messages if m.type == "human"), "")
            return f"Your first message was: {first}"
        return f"Hello! (reply {calls})"
