"""A scripted stand-in for a capable model behind the fake Ollama, for
bench.answer_quality --model fake-ollama: it grades, rewrites and answers,
so the bench shows the Ollama path asks the model for what the manifest
trusts it with. Its judgement is word overlap, not understanding."""

from __future__ import annotations

import json
import re
from typing import Any

from appliance.agent.rag_prompts import REWRITE_INSTRUCTIONS
from appliance.knowledge.text import content_terms


def _question(text: str) -> str:
    return text.rsplit("Question: ", 1)[1].split("\n", 1)[0].strip()


def capable_reply(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    system, last = messages[0]["content"] if messages else "", messages[-1]["content"] if messages else ""
    if isinstance(body.get("format"), dict):  # a relevance judgement
        passage = last.split("Passage:\n", 1)[1].rsplit("\n\nQuestion: ", 1)[0]
        asked = set(content_terms(_question(last)))
        held = asked & set(content_terms(passage))
        return json.dumps({"choice": "yes" if len(held) >= max(1, len(asked) // 2) else "no"})
    if system.startswith(REWRITE_INSTRUCTIONS):
        return " ".join(content_terms(_question(last)))
    if "Sources:\n" in last:  # the answer: the source sentence with most of the question's words, cited
        asked = set(content_terms(_question(last)))
        sources = re.findall(r"\[(\d+)\] \([^\n]*\)\n(.*?)(?=\n\n\[\d+\] \(|\n\nQuestion: )", last, re.S)
        best = max(
            ((n, s) for n, text in sources for s in re.split(r"(?<=[.!?])\s+", text)),
            key=lambda ns: len(asked & set(content_terms(ns[1]))),
            default=None,
        )
        return f"{best[1]} [{best[0]}]" if best else "I do not know."
    return "Hello! How can I help?"
