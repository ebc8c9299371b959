"""Whether the passages answer the question, decided from retrieval evidence
instead of a model's yes or no; the sentences that answer it; and whether a
written answer says only what its cited passages say.

A passage is judged by its best sentence. A sentence's score is its cosine
similarity to the question (MiniLM, the sentence embedded with its section
heading, which often names the topic the sentence leaves out) plus
``COVERAGE_WEIGHT`` times the share of the question's content words it
holds. The question is answered when some sentence scores at least
``ANSWER_THRESHOLD``.

Calibration (``python -m bench.answer_quality --calibrate`` prints it): on
the labelled set of bench/answer_quality_set.py, 46 answerable questions and
12 the documents do not cover, the best sentence of every answerable question
scored 0.60 or more, and the best sentence of every uncovered one 0.50 or
less. The threshold sits in the middle of that gap, at 0.55. (A wrong refusal
costs the user a rephrased question; a wrong answer costs their trust.) The
answering sentence was the best-scoring one for 43 of 46 questions and within
``EVIDENCE_MARGIN`` of it for one more.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from appliance.agent.citations import cite
from appliance.knowledge.embeddings import Embedder, cosine
from appliance.knowledge.text import Span, content_terms, numbers, sentences

COVERAGE_WEIGHT = 0.4
ANSWER_THRESHOLD = 0.55
# Sentences this close to the best one answer the question too.
EVIDENCE_MARGIN = 0.1
# The most sentences embedded in a turn (about 4 ms each on two cores): the
# candidates with most of the question's words, from the best-ranked passages.
MAX_SCORED_SENTENCES = 16
SCORED_PASSAGES = 4
# A sentence that opens by pointing back ("It runs...", "Outside those hours...")
# is quoted with the sentence before it.
_POINTS_BACK = re.compile(r"^\W*(?:\w+\s+){0,2}?(it|its|they|their|this|that|these|those|he|she|there)\b", re.I)

# An answer sentence is supported when this share of its content words stands
# in one sentence of a passage it cites (or, for a paraphrase by a model trusted
# to rewrite, a smaller share with a close meaning), and every number it states
# stands in that passage.
SUPPORT_PRECISION = 0.75
PARAPHRASE_PRECISION = 0.34
PARAPHRASE_SIMILARITY = 0.7


@dataclass(frozen=True)
class Evidence:
    """One scored sentence of a passage, as state keeps it."""

    chunk_id: str
    start: int
    end: int
    score: float
    similarity: float
    coverage: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def coverage(question_terms: Sequence[str], text: str) -> float:
    if not question_terms:
        return 0.0
    held = set(content_terms(text))
    return sum(1 for t in question_terms if t in held) / len(question_terms)


class VectorCache:
    """Sentence vectors by text, so a passage asked about again costs nothing
    and the answer check reuses what the judgement embedded."""

    def __init__(self, embedder: Embedder, size: int = 8192) -> None:
        self.embedder = embedder
        self.size = size
        self._vectors: OrderedDict[str, list[float]] = OrderedDict()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            for text, vector in zip(missing, await self.embedder.aembed(missing), strict=True):
                self._vectors[text] = vector
        out = []
        for text in texts:
            self._vectors.move_to_end(text)
            out.append(self._vectors[text])
        while len(self._vectors) > self.size:
            self._vectors.popitem(last=False)
        return out


def in_context(passage: dict[str, Any], text: str) -> str:
    """What is embedded for a sentence: its section heading, then the sentence."""
    heading = passage.get("heading") or passage.get("title") or ""
    return f"{heading}: {text}" if heading else text


class EvidenceJudge:
    def __init__(self, embedder: Embedder, *, threshold: float = ANSWER_THRESHOLD) -> None:
        self.vectors = VectorCache(embedder)
        self.threshold = threshold

    async def score(self, question: str, passages: Sequence[dict[str, Any]]) -> list[Evidence]:
        """The candidate sentences of the best-ranked passages, best first."""
        terms = content_terms(question)
        candidates = [
            (rank, p, span, coverage(terms, span.text))
            for rank, p in enumerate(passages[:SCORED_PASSAGES])
            for span in sentences(p["text"])
        ]
        # Most of the question's words first, then the better-ranked passage, then reading order.
        candidates.sort(key=lambda c: (-c[3], c[0], c[2].start))
        candidates = candidates[:MAX_SCORED_SENTENCES]
        vectors = await self.vectors.embed([question, *(in_context(p, s.text) for _, p, s, _ in candidates)])
        scored = []
        for (_, p, span, cov), vector in zip(candidates, vectors[1:], strict=True):
            similarity = cosine(vectors[0], vector)
            score = similarity + COVERAGE_WEIGHT * cov
            scored.append(Evidence(p["chunk_id"], span.start, span.end, round(score, 4), round(similarity, 4), cov))
        scored.sort(key=lambda e: -e.score)
        return scored

    def answering(self, scored: Sequence[Evidence]) -> list[Evidence]:
        """The sentences that answer the question: over the threshold, near the best."""
        if not scored or scored[0].score < self.threshold:
            return []
        return [e for e in scored if e.score >= max(self.threshold, scored[0].score - EVIDENCE_MARGIN)]

    @staticmethod
    def best_of(scored: Sequence[Evidence]) -> list[Evidence]:
        """The best sentences of passages already judged relevant (by a model trusted to decide)."""
        return [e for e in scored if e.score >= scored[0].score - EVIDENCE_MARGIN] if scored else []


def relevant_passages(passages: Sequence[dict[str, Any]], answering: Sequence[Evidence]) -> list[dict[str, Any]]:
    """The passages holding an answering sentence, best sentence first."""
    by_id = {p["chunk_id"]: p for p in passages}
    order = list(dict.fromkeys(e.chunk_id for e in answering))
    return [by_id[i] for i in order if i in by_id]


# Extractive answers -------------------------------------------------------------


MAX_QUOTED = 2


def quoted_spans(passage: dict[str, Any], evidence: Evidence) -> Span:
    """The evidence sentence, with the one before it when it points back."""
    spans = sentences(passage["text"])
    at = next((i for i, s in enumerate(spans) if s.start == evidence.start), None)
    if at is None:
        return Span(evidence.start, evidence.end, passage["text"][evidence.start : evidence.end])
    start = spans[at - 1].start if at > 0 and _POINTS_BACK.match(spans[at].text) else spans[at].start
    return Span(start, spans[at].end, passage["text"][start : spans[at].end])


def excerpts(passages: Sequence[dict[str, Any]], answering: Sequence[Evidence]) -> list[dict[str, Any]]:
    """The passages, each cut down to its answering sentences (numbering unchanged)."""
    out = []
    for passage in passages:
        mine = sorted((e for e in answering if e.chunk_id == passage["chunk_id"]), key=lambda e: e.start)
        spans = list({s.start: s for s in (quoted_spans(passage, e) for e in mine)}.values())
        out.append(passage | {"text": " ".join(s.text for s in spans)} if spans else passage)
    return out


def extractive_answer(
    passages: Sequence[dict[str, Any]], answering: Sequence[Evidence]
) -> tuple[str, list[dict[str, Any]]]:
    """The answering sentences quoted, each with its citation; the citations
    are numbered by passage, in the order ``passages`` has them."""
    by_id = {p["chunk_id"]: (n, p) for n, p in enumerate(passages, start=1)}
    quotes: list[tuple[int, Span]] = []
    for e in answering:
        if e.chunk_id not in by_id or len(quotes) == MAX_QUOTED:
            continue
        n, passage = by_id[e.chunk_id]
        span = quoted_spans(passage, e)
        if any(m == n and s.start <= span.start < s.end for m, s in quotes):
            continue  # the same words quoted already
        quotes.append((n, span))
    lines = [f"“{span.text.strip()}” [{n}]" for n, span in quotes]
    text = "From the documents:\n\n" + "\n\n".join(lines)
    return text, cite(text, passages, quotes)[1]


# Checking a written answer -------------------------------------------------------------

_MARKERS = re.compile(r"\[(\d{1,2})\]")


@dataclass(frozen=True)
class Check:
    """The outcome of checking a written answer against its sources."""

    supported: bool
    reason: str
    spans: tuple[tuple[int, Span], ...] = ()  # (source number, supporting sentence)


async def check_answer(
    judge: EvidenceJudge,
    question: str,
    answer: str,
    passages: Sequence[dict[str, Any]],
    answering: Sequence[Evidence],
    *,
    paraphrase: bool = True,
) -> Check:
    """Every sentence of the answer must be supported by a sentence of a passage
    it cites, and at least one of those must be a sentence that answers the
    question (so a true but beside-the-point quote does not pass). Without
    ``paraphrase`` a sentence must keep to its source's words."""
    valid = range(1, len(passages) + 1)
    if not any(int(n) in valid for n in _MARKERS.findall(answer)):
        return Check(False, "the answer cites no source")
    claims = [(s.text, [int(n) for n in _MARKERS.findall(s.text) if int(n) in valid]) for s in sentences(answer)]
    claims = [(_MARKERS.sub("", text), cited) for text, cited in claims]
    said = {t for text, _ in claims for t in content_terms(text)}
    if not said:
        return Check(False, "the answer says nothing of substance")
    if said <= set(content_terms(question)):
        return Check(False, "the answer only restates the question")
    every = sorted({n for _, cited in claims for n in cited})
    answering_at = {(e.chunk_id, e.start) for e in answering}
    support: list[tuple[int, Span]] = []
    on_question = False
    for text, cited in claims:
        terms = content_terms(text)
        if not terms:
            continue
        found = await _supporting_sentence(
            judge, text, terms, [(n, passages[n - 1]) for n in cited or every], paraphrase
        )
        if found is None:
            return Check(False, f"nothing in the cited sources says: {text.strip()!r}")
        n, span = found
        support.append(found)
        on_question = on_question or (passages[n - 1]["chunk_id"], span.start) in answering_at
    if not on_question:
        return Check(False, "the answer does not use the passages' answer to the question")
    return Check(True, "supported", tuple(support))


async def _supporting_sentence(
    judge: EvidenceJudge, text: str, terms: list[str], cited: list[tuple[int, dict[str, Any]]], paraphrase: bool
) -> tuple[int, Span] | None:
    stated = numbers(text)
    candidates = []
    for n, passage in cited:
        if not stated <= numbers(passage["text"]):
            continue  # a number the passage does not state
        for span in sentences(passage["text"]):
            held = set(content_terms(span.text))
            candidates.append((sum(1 for t in terms if t in held) / len(terms), n, passage, span))
    if not candidates:
        return None
    candidates.sort(key=lambda c: -c[0])
    precision, n, _, span = candidates[0]
    if precision >= SUPPORT_PRECISION:
        return n, span
    close = [c for c in candidates if c[0] >= PARAPHRASE_PRECISION][:4] if paraphrase else []
    if not close:
        return None
    vectors = await judge.vectors.embed([text, *(in_context(p, s.text) for _, _, p, s in close)])
    best = max(range(len(close)), key=lambda i: cosine(vectors[0], vectors[i + 1]))
    if cosine(vectors[0], vectors[best + 1]) >= PARAPHRASE_SIMILARITY:
        return close[best][1], close[best][3]
    return None
