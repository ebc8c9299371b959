"""Constrained decisions: the model must answer with one word from a fixed set.

Small models are unreliable at free-form JSON, so a node that must decide asks
for a choice and the provider constrains decoding to it: a GBNF grammar for
llama.cpp, a JSON schema (Ollama's ``format``) for Ollama. Parsing still
tolerates a reply that strays, and falls back to the caller's default.
"""

from __future__ import annotations

import json
from collections.abc import Sequence


def choice_grammar(choices: Sequence[str]) -> str:
    """A GBNF grammar whose only sentences are the choices."""
    return "root ::= " + " | ".join(json.dumps(c) for c in choices)


def choice_schema(choices: Sequence[str]) -> dict:
    return {
        "type": "object",
        "properties": {"choice": {"type": "string", "enum": list(choices)}},
        "required": ["choice"],
    }


def parse_choice(text: str, choices: Sequence[str], default: str) -> str:
    text = text.strip()
    try:
        value = json.loads(text)
        if isinstance(value, dict):
            text = str(value.get("choice", ""))
        elif isinstance(value, str):
            text = value
    except ValueError:
        pass
    lowered = text.lower()
    for choice in choices:
        if lowered == choice.lower():
            return choice
    for choice in choices:
        if lowered.startswith(choice.lower()):
            return choice
    return default


def cited_grammar(sources: int) -> str:
    """A GBNF grammar for an answer of one or two sentences on one line that
    must end by citing one of ``sources`` numbered sources, like "... [2]": a
    small model that would stop without a marker, or ramble on, has to cite."""
    numbers = " | ".join(json.dumps(str(n)) for n in range(1, sources + 1))
    return (
        f'root ::= sentence (" " sentence)? " [" source "]"\nsentence ::= [^\\[\\]\\n.!?]+ [.!?]\nsource ::= {numbers}'
    )
