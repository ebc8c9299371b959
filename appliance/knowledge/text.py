"""Words and sentences of a passage, without a tokenizer or a download.

``content_terms`` keeps the words that carry meaning (no stop words, no
question words), lower-cased and lightly stemmed so "charging" meets
"charge" and "bikes" meets "bike". ``sentences`` cuts a passage into its
sentences with their offsets, so a citation can point at the very sentence.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

STOP_WORDS = frozenset(
    """a about above after again against all am an and any are aren't as at be because been before being below
    between both but by can can't cannot could couldn't did didn't do does doesn't doing don't down during each
    few for from further had hadn't has hasn't have haven't having he her here hers herself him himself his how
    i if in into is isn't it it's its itself let's me more most my myself no nor not of off on once only or
    other ought our ours ourselves out over own same she should shouldn't so some such than that that's the
    their theirs them themselves then there there's these they this those through to too under until up very
    was wasn't we were weren't what what's when where which while who whom why with won't would wouldn't you
    your yours yourself yourselves will shall may might must also just get got us anyone anybody anything
    anywhere someone something please tell know need want like really s t d ll m re ve""".split()
)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
# A sentence ends at . ! or ? followed by a space, unless the dot closes a
# common abbreviation or sits between digits.
_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_ABBREVIATIONS = frozenset("dr mr mrs ms prof st no nr vs etc e.g i.e approx fig inc ltd dept ext tel".split())
# A run of words without an end (a table, a list) is cut so no "sentence" swallows a passage.
MAX_SENTENCE_WORDS = 60


def stem(word: str) -> str:
    """A light English stemmer: plurals, -ing, -ed, -ly; short words kept whole."""
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) <= 3 or word.isdigit():
        return word
    stripped = False
    for suffix, keep in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("edly", ""), ("ed", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word, stripped = word[: -len(suffix)] + keep, True
            break
    else:
        if word.endswith("es") and word[-3:-2] in ("s", "x", "z") or word.endswith(("ches", "shes")):
            word = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
    if stripped and len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "sz":  # running -> run
        word = word[:-1]
    if len(word) > 4 and word.endswith("e"):  # charge / charging, issue / issued
        word = word[:-1]
    return word


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def content_terms(text: str) -> list[str]:
    """The stems of the words that carry meaning, in order, each once."""
    seen: dict[str, None] = {}
    for word in words(text):
        if word not in STOP_WORDS and (len(word) > 1 or word.isdigit()):
            seen.setdefault(stem(word), None)
    return list(seen)


def numbers(text: str) -> set[str]:
    """The numbers a text states (times and codes count digit group by digit group)."""
    return set(re.findall(r"\d+", text))


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    text: str


@functools.lru_cache(maxsize=4096)
def sentences(text: str) -> tuple[Span, ...]:
    """The passage's sentences with their character offsets, in order (cached:
    a turn cuts the same passages while judging, quoting and checking)."""
    spans: list[Span] = []
    start = 0
    for match in _END.finditer(text):
        at = match.start()  # just after the . ! or ?
        before = text[start:at].rsplit(None, 1)
        last = before[-1].lower().rstrip(".") if before else ""
        between_digits = (
            text[at - 1] == "." and at >= 2 and text[at - 2].isdigit()
            and match.end() < len(text) and text[match.end()].isdigit()
        )  # fmt: skip
        if last in _ABBREVIATIONS or between_digits:
            continue
        spans.extend(_cut(text, start, match.start() + len(match.group(0).rstrip())))
        start = match.end()
    if text[start:].strip():
        spans.extend(_cut(text, start, len(text.rstrip())))
    return tuple(s for s in spans if s.text)


def _cut(text: str, start: int, end: int) -> list[Span]:
    """One sentence, or windows of it when it is longer than MAX_SENTENCE_WORDS."""
    while start < end and text[start].isspace():
        start += 1
    found = list(re.finditer(r"\S+", text[start:end]))
    if len(found) <= MAX_SENTENCE_WORDS:
        return [Span(start, end, text[start:end])]
    spans = []
    for i in range(0, len(found), MAX_SENTENCE_WORDS):
        group = found[i : i + MAX_SENTENCE_WORDS]
        a, b = start + group[0].start(), start + group[-1].end()
        spans.append(Span(a, b, text[a:b]))
    return spans
