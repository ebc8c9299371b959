"""A second search query from the question's own keywords and the knowledge
base's vocabulary (lexical expansion), for models that cannot rewrite.

The first search used the whole question. The second keeps the question's
keywords that the knowledge base holds, and replaces each keyword it does not
hold with the knowledge base's words nearest in spelling (a typo, another form
of the word: "instalation" finds "install", "reimbursed" finds
"reimbursement"), the most common first. Words neither the question nor the
vocabulary can place are dropped: they could only dilute the search.
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
    """Another form or a misspelling of the same word."""
    if len(stem) < MIN_STEM or len(word) < MIN_STEM or stem == word:
        return False
    shorter = min(len(stem), len(word))
    if stem[: max(MIN_STEM + 1, shorter - 2)] == word[: max(MIN_STEM + 1, shorter - 2)]:
        return True
    return len(stem) >= 5 and edit_distance_at_most_one(stem, word)


def expand(question_stems: Sequence[str], vocabulary: Mapping[str, int]) -> list[str]:
    """The second query's terms: the question's stems the vocabulary holds, and
    the vocabulary's nearest words for those it does not."""
    terms: list[str] = []
    for stem in dict.fromkeys(question_stems):
        if stem in vocabulary:
            terms.append(stem)
            continue
        near = sorted((w for w in vocabulary if related(stem, w)), key=lambda w: (-vocabulary[w], w))
        terms.extend(near[:EXPANSIONS_PER_WORD])
    return list(dict.fromkeys(terms))
