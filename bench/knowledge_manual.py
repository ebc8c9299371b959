"""Ingestion and retrieval on a real public corpus: the PostgreSQL 15 manual.

    apt-get install postgresql-doc-15      # about 1,100 HTML pages
    python -m bench.knowledge_manual [--pages N] [--backend torch|onnx-int8]

Ingestion: every page through the whole pipeline (extract, chunk, embed,
Chroma, PostgreSQL), then raw sentence-transformers on the very same chunk
texts; the ratio of the two rates shows what the pipeline costs beyond the
embedding itself. Retrieval: recall@5 and MRR@10 of the answering page for
the questions in bench/pg_manual_questions.py, for dense-only, lexical-only
and hybrid search (no relevance floor, so the rankings compare fairly).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

from appliance.cli.ingest import IN_FLIGHT
from appliance.knowledge.embeddings import Embedder, embedding_text
from appliance.runtime import open_database, open_knowledge
from appliance.store.audit import Actor
from appliance.store.knowledge import ChunkFilter
from bench.common import bench_settings
from bench.pg_manual_questions import QUESTIONS

MANUAL = Path("/usr/share/doc/postgresql-doc-15/html")
MODES = ("dense", "lexical", "hybrid")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def ingest_manual(knowledge, pages: list[Path]) -> tuple[str, float, int]:
    """Every page through the pipeline, as many in flight as ``appliance ingest`` keeps."""
    kb = await knowledge.create("default", "postgresql-manual", actor=Actor.host())
    slots = asyncio.Semaphore(IN_FLIGHT)
    started = time.perf_counter()
    done, chunks = 0, 0

    async def add(page: Path) -> None:
        nonlocal done, chunks
        async with slots:
            ingested = await knowledge.add_document(
                "default", kb.knowledge_base_id, page.name, page.read_bytes(), actor=Actor.host()
            )
        done, chunks = done + 1, chunks + ingested.document.chunk_count
        if done % 100 == 0:
            print(f"  {done}/{len(pages)} pages, {chunks} chunks, {time.perf_counter() - started:.0f} s", flush=True)

    await asyncio.gather(*(add(page) for page in pages))
    return kb.knowledge_base_id, time.perf_counter() - started, chunks


async def chunk_texts(knowledge, kb_id) -> list[str]:
    """The texts the pipeline embedded, rebuilt from what it stored."""
    async with knowledge.store.pool.connection() as conn:
        rows = await (
            await conn.execute(
                """SELECT d.title, c.heading, c.text FROM chunks c JOIN documents d USING (document_id)
                   WHERE c.knowledge_base_id = %s ORDER BY c.chunk_id""",
                (kb_id,),
            )
        ).fetchall()

    return [embedding_text(r["title"], r["heading"], r["text"]) for r in rows]


def raw_rate(embedder: Embedder, texts: list[str]) -> float:
    started = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


async def evaluate(knowledge, kb_id) -> dict[str, tuple[float, float]]:
    scope = ChunkFilter(knowledge_base_ids=[kb_id])
    scores = {}
    for mode in MODES:
        hits, reciprocal = 0, 0.0
        for question, page in QUESTIONS:
            found = await knowledge.retriever.search(question, scope, 10, mode=mode, floor=-1.0)
            sources = [p.chunk.source for p in found.passages]
            hits += page in sources[:5]
            reciprocal += 1 / (sources.index(page) + 1) if page in sources else 0.0
        scores[mode] = (hits / len(QUESTIONS), reciprocal / len(QUESTIONS))
    return scores


async def main(pages_limit: int | None, backend: str) -> None:
    if not MANUAL.is_dir():
        sys.exit(f"{MANUAL} is missing: apt-get install postgresql-doc-15")
    pages = sorted(MANUAL.glob("*.html"))
    if pages_limit:
        # Keep every page a question needs, then fill up in order.
        needed = {page for _, page in QUESTIONS}
        chosen = [p for p in pages if p.name in needed]
        chosen += [p for p in pages if p.name not in needed][: max(0, pages_limit - len(chosen))]
        pages = sorted(chosen)
    with bench_settings(embedding_backend=backend) as settings:
        async with open_database(settings) as (pool, _):
            rss_before = peak_rss_mb()
            knowledge = await open_knowledge(settings, pool)
            rss_loaded = peak_rss_mb()
            print(f"ingesting {len(pages)} pages of the PostgreSQL 15 manual; embeddings: {backend}")
            kb_id, seconds, chunks = await ingest_manual(knowledge, pages)
            rss_ingested = peak_rss_mb()
            pipeline = chunks / seconds
            texts = await chunk_texts(knowledge, kb_id)
            raw = raw_rate(knowledge.ingestor.embedder, texts)
            words = sum(len(t.split()) for t in texts) / len(texts)

            print(f"\nIngestion ({len(pages)} pages, {chunks} chunks, {words:.0f} words a chunk on average)")
            print(f"  whole pipeline          {pipeline:7.1f} chunks/s  ({seconds:.0f} s)")
            print(f"  embedding alone         {raw:7.1f} chunks/s  (same texts, one call)")
            print(f"  ratio pipeline / raw    {pipeline / raw:7.2f}   (target >= 0.8)")
            print(
                f"  peak RSS                {rss_ingested:7.0f} MB  "
                f"(before models {rss_before:.0f} MB, models loaded {rss_loaded:.0f} MB)"
            )

            scores = await evaluate(knowledge, kb_id)
            print(f"\nRetrieval ({len(QUESTIONS)} questions, answer page in the results)")
            print(f"  {'mode':<8} {'recall@5':>9} {'MRR@10':>8}")
            for mode, (recall, mrr) in scores.items():
                print(f"  {mode:<8} {recall:9.3f} {mrr:8.3f}")
            print(f"  hybrid beats dense-only: {scores['hybrid'][0] > scores['dense'][0]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, help="ingest only this many pages (those the questions need first)")
    parser.add_argument("--backend", choices=["torch", "onnx-int8"], default="torch", help="the embedding backend")
    args = parser.parse_args()
    asyncio.run(main(args.pages, args.backend))
