"""A second search query from the question's own keywords and the knowledge
base's vocabulary (lexical expansion), for models that cannot rewrite.

The first search used the whole question. The second keeps the question's
keywords that the knowledge base holds, and replaces each keyword it does not
hold with the knowledge base's words nearest in spelling (a typo, another form
of the word: "instalation" finds "install", "reimbursed" finds
"reimbursement"; the first two letters must agree), the most common first. Keywords the vocabulary cannot place
are dropped, as they could only dilute the search; when none is left, the
second search is the question's keywords alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

MIN_STEM = 4
EXPANSIONS_PER_WORD = 2


def edit_distance_at_most_one(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = j = edits = 0
    while i < len(a) and j < len(b):
        if a[i] == b[j]:
            i, j = i + 1, j + 1
            continue
        edits += 1
        if edits > 1:
            return False
        if len(a) == len(b):
            i += 1
        j += 1
    return edits + (len(b) - j) + (len(a) - i) <= 1


def related(stem: str, word: str) -> bool:
    """Another form or a misspelling of the same word (both begin alike)."""
    if len(stem) < MIN_STEM or len(word) < MIN_STEM or stem == word or stem[:2] != word[:2]:
        return False
    shorter = min(len(stem), len(word))
    if stem[: max(MIN_STEM + 1, shorter - 2)] == word[: max(MIN_STEM + 1, shorter - 2)]:
        return True
    return len(stem) >= 5 and edit_distance_at_most_one(stem, word)


def expand(keywords: Sequence[tuple[str, str]], vocabulary: Mapping[str, int]) -> list[str]:
    """The second query's terms from the question's (word, stem) keywords: the
    words whose stem the vocabulary holds, and the vocabulary's nearest stems
    for those it does not."""
    terms: list[str] = []
    for word, stem in keywords:
        if stem in vocabulary:
            terms.append(word.lower())
            continue
        near = sorted((w for w in vocabulary if related(stem, w)), key=lambda w: (-vocabulary[w], w))
        terms.extend(near[:EXPANSIONS_PER_WORD])
    return list(dict.fromkeys(terms)) or list(dict.fromkeys(word.lower() for word, _ in keywords))
