"""Bounded conversation memory: pure functions that build the prompt and
decide which older turns to fold into the running summary."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage

# Chat templates add a few tokens of framing around every message.
MESSAGE_OVERHEAD_TOKENS = 4

SUMMARY_HEADING = "Summary of the earlier conversation:"

SUMMARIZER_INSTRUCTIONS = (
    "You keep a running summary of a conversation between a user and an assistant. "
    "Merge the new lines into the summary. Keep names, numbers, decisions and facts the "
    "user stated; drop pleasantries. Answer with the summary only."
)


@dataclass(frozen=True)
class MemoryPolicy:
    system_prompt: str
    token_budget: int
    fold_target: float
    summary_max_tokens: int
    count_tokens: Callable[[str], int]

    def tokens(self, messages: Sequence[BaseMessage]) -> int:
        return sum(self.count_tokens(m.text) + MESSAGE_OVERHEAD_TOKENS for m in messages)

    def max_message_tokens(self) -> int:
        """The largest single user message a prompt can hold beside the system
        prompt and a full summary."""
        fixed = self.count_tokens(self.system_prompt) + self.summary_max_tokens + 2 * MESSAGE_OVERHEAD_TOKENS
        return max(1, int(self.token_budget * self.fold_target) - fixed)


def system_message(policy: MemoryPolicy, summary: str) -> SystemMessage:
    if not summary:
        return SystemMessage(policy.system_prompt)
    return SystemMessage(f"{policy.system_prompt}\n\n{SUMMARY_HEADING}\n{summary}")


def build_prompt(policy: MemoryPolicy, messages: Sequence[BaseMessage], summary: str, folded: int) -> list[BaseMessage]:
    return [system_message(policy, summary), *messages[folded:]]


def plan_fold(policy: MemoryPolicy, messages: Sequence[BaseMessage], summary: str, folded: int) -> int | None:
    """Where the new fold point goes, or None while the prompt fits the budget.

    When the prompt is over budget, fold whole turns (up to the next user
    message) until what remains, with room for a full-size summary, fits under
    fold_target * budget. The newest user message is never folded.
    """
    window = policy.tokens(messages[folded:])  # each message counted once
    if policy.tokens([system_message(policy, summary)]) + window <= policy.token_budget:
        return None
    target = policy.token_budget * policy.fold_target
    reserved = policy.tokens([system_message(policy, "")]) + policy.summary_max_tokens
    last = len(messages) - 1
    remaining = window
    for point in range(folded + 1, last + 1):
        remaining -= policy.tokens([messages[point - 1]])
        if isinstance(messages[point], HumanMessage) and reserved + remaining <= target:
            return point
    return last if last > folded else None


def summarizer_prompt(summary: str, messages: Sequence[BaseMessage]) -> list[BaseMessage]:
    lines = "\n".join(f"{'User' if m.type == 'human' else 'Assistant'}: {m.text}" for m in messages)
    previous = summary or "(none yet)"
    return [
        SystemMessage(SUMMARIZER_INSTRUCTIONS),
        HumanMessage(f"Summary so far:\n{previous}\n\nNew lines:\n{lines}\n\nUpdated summary:"),
    ]
