"""Sections to chunks that respect headings, pages and paragraphs.

Sizes are counted in words, not tokens, so no tokenizer (and no download) is
involved. A chunk never spans two headings or two pages, so its citation is
exact; paragraphs are packed whole while they fit, and only a paragraph longer
than a chunk is cut, at sentence ends where it can be. Consecutive chunks of
one block share ``overlap`` words so a passage cut in two is still found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import groupby

from appliance.knowledge.extract import Section

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    heading: str
    page: int | None

    @property
    def words(self) -> int:
        return len(self.text.split())


def chunk_sections(sections: list[Section], *, size: int, overlap: int) -> list[Chunk]:
    if not 0 <= overlap < size:
        raise ValueError(f"overlap ({overlap}) must be at least 0 and smaller than size ({size})")
    chunks: list[Chunk] = []
    for (heading, page), block in groupby(sections, key=lambda s: (s.heading, s.page)):
        for text in _pack([s.text for s in block], size, overlap):
            chunks.append(Chunk(len(chunks), text, heading, page))
    return chunks


def _pack(paragraphs: list[str], size: int, overlap: int) -> list[str]:
    """Greedy packing of whole pieces (paragraphs, or sentences of long ones) into chunks."""
    # Pieces leave room for the overlap, so a chunk of cut text still shares its edge with the next.
    pieces = [piece for p in paragraphs for piece in _pieces(p, size - overlap)]
    chunks: list[list[str]] = []
    current: list[str] = []
    for piece in pieces:
        words = piece.split()
        if current and len(current) + len(words) > size:
            chunks.append(current)
            current = current[-overlap:] if overlap else []
            # Never carry so much overlap that the next piece cannot fit.
            current = current[max(0, len(current) + len(words) - size) :]
        current = current + words
    if current and (not chunks or current != chunks[-1][-len(current) :]):
        chunks.append(current)
    return [" ".join(c) for c in chunks]


def _pieces(paragraph: str, size: int) -> list[str]:
    """A paragraph as pieces of at most ``size`` words: whole when it fits, else sentences, else word runs."""
    if len(paragraph.split()) <= size:
        return [paragraph]
    out: list[str] = []
    for sentence in _SENTENCE_END.split(paragraph):
        words = sentence.split()
        out.extend(" ".join(words[i : i + size]) for i in range(0, len(words), size))
    return out
