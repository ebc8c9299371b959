"""Answer quality end to end: the set in bench/answer_quality_set.py asked
through the HTTP API, one new conversation a question, on the embedded
default (SmolLM2-135M under llama.cpp, embedded Chroma) or on the Ollama path
against the fake Ollama playing a capable model.

    python -m bench.answer_quality [--model embedded|fake-ollama] [--show]
    python -m bench.answer_quality --calibrate   # the evidence scores behind the relevance threshold

Answered right: the fact is in the answer and the right document is cited.
Refused right: a question the documents do not cover gets the refusal.
Unsupported: an answer that is neither right nor a refusal (a wrong fact, the
wrong document, or an answer to a question the documents do not cover).
Check time: the deterministic work added to a turn (judging passages,
checking the answer, extracting sentences), as the graph reports it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass

from appliance.cli.remote import read_events
from appliance.store.audit import Actor
from bench.answer_quality_set import ANSWERABLE, UNCOVERED, Question, documents
from bench.common import bench_settings, percentile
from tests.support.app import serve_app

REFUSAL_START = "The documents available to this conversation do not cover this"


@dataclass
class Outcome:
    question: Question
    verdict: str  # right, refused-right, wrong-refusal, unsupported
    answer: str
    cited: list[str]
    mode: str
    seconds: float
    check_ms: float


def verdict_of(question: Question, answer: str, cited: list[str]) -> str:
    refused = answer.startswith(REFUSAL_START)
    if question.document is None:
        return "refused-right" if refused else "unsupported"
    if refused:
        return "wrong-refusal"
    normal = re.sub(r"\s+", " ", answer).lower()
    has_fact = any(f.lower() in normal for f in question.facts)
    return "right" if has_fact and question.document in cited else "unsupported"


async def ask(client, kb_id: str, question: Question) -> Outcome:
    thread = (await client.post("/threads", json={"metadata": {"knowledge_bases": [kb_id]}})).json()["thread_id"]
    body = {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": question.text}]},
        "stream_mode": ["values", "custom"],
    }
    values, check_ms = {}, 0.0
    started = time.perf_counter()
    async with client.stream("POST", f"/threads/{thread}/runs/stream", json=body) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        async for event, data in read_events(response.aiter_lines()):
            if event == "values":
                values = data
            elif event == "custom":
                check_ms += data.get("check_ms", 0.0)
    seconds = time.perf_counter() - started
    answer = values["messages"][-1]["content"]
    cited = [c["source"] for c in values.get("citations") or []]
    return Outcome(
        question, verdict_of(question, answer, cited), answer, cited, values.get("answer_mode", "-"), seconds, check_ms
    )


@contextlib.asynccontextmanager
async def model_under_test(name: str):
    """The model a run uses, and the settings it needs."""
    if name == "embedded":
        yield None, {}
        return
    from bench.capable_model import capable_reply
    from tests.support.fake_ollama import MODEL, FakeOllama

    with FakeOllama() as fake:
        fake.respond = capable_reply
        yield fake, {"llm_provider": "ollama", "ollama_url": fake.url, "ollama_model": MODEL}


async def main(model_name: str, show: bool) -> None:
    async with model_under_test(model_name) as (fake, extra):
        with bench_settings(**extra) as settings:
            async with serve_app(settings) as app:
                client = app.client
                kb_id = (await client.post("/knowledge-bases", json={"name": "answer-quality"})).json()[
                    "knowledge_base_id"
                ]
                for name, data in documents().items():
                    response = await client.post(f"/knowledge-bases/{kb_id}/documents", files={"file": (name, data)})
                    assert response.status_code == 201, response.text
                await ask(client, kb_id, ANSWERABLE[0])  # warm-up: model and embedder loaded, caches filled
                outcomes = [await ask(client, kb_id, q) for q in [*ANSWERABLE, *UNCOVERED]]
        grades = sum(1 for r in fake.chat_requests() if "yes" in json.dumps(r["body"].get("format"))) if fake else 0
    report(model_name, outcomes, show, grades if fake else None)


def report(model_name: str, outcomes: list[Outcome], show: bool, grade_calls: int | None) -> None:
    counts = Counter(o.verdict for o in outcomes)
    answerable, uncovered = len(ANSWERABLE), len(UNCOVERED)
    modes = Counter(o.mode for o in outcomes if o.verdict == "right")
    seconds = [o.seconds for o in outcomes]
    checks = [o.check_ms for o in outcomes]
    if show:
        for o in outcomes:
            print(f"[{o.verdict:>13}] {o.mode:>10} {o.seconds:5.2f}s  {o.question.text}")
            print(f"{'':16}-> {o.answer[:220]!r}  cites {sorted(set(o.cited))}")
    print(f"model: {model_name}; {answerable} answerable questions, {uncovered} the documents do not cover")
    print(
        f"answered right  {counts['right']:>3}/{answerable} ({counts['right'] / answerable:.0%})  by mode {dict(modes)}"
    )
    print(f"refused right   {counts['refused-right']:>3}/{uncovered} ({counts['refused-right'] / uncovered:.0%})")
    print(f"wrong refusals  {counts['wrong-refusal']:>3}")
    print(f"unsupported     {counts['unsupported']:>3}")
    print(f"turn time       median {percentile(seconds, 50):.2f} s, p90 {percentile(seconds, 90):.2f} s")
    print(f"check time      median {percentile(checks, 50):.1f} ms, p90 {percentile(checks, 90):.1f} ms a turn")
    if grade_calls is not None:
        print(f"model grading   {grade_calls} relevance judgements asked of the model")


async def calibrate() -> None:
    """The best sentence score of every labelled question, in process, as the
    grade node computes it: the gap between the answerable and the uncovered
    questions is where ANSWER_THRESHOLD belongs."""
    from appliance.agent.evidence import ANSWER_THRESHOLD, EvidenceJudge
    from appliance.agent.rag_nodes import CANDIDATE_FLOOR
    from appliance.knowledge.sources import passage_dict
    from appliance.store.knowledge import ChunkFilter
    from bench.common import instant_model

    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            knowledge = app.runtime.knowledge
            kb = await knowledge.create("default", "calibration", actor=Actor.host())
            for name, data in documents().items():
                await knowledge.add_document("default", kb.knowledge_base_id, name, data, actor=Actor.host())
            judge = EvidenceJudge(knowledge.retriever.embedder)
            scope = ChunkFilter(knowledge_base_ids=[kb.knowledge_base_id])
            best = {}
            for question in [*ANSWERABLE, *UNCOVERED]:
                found = await knowledge.retriever.search(question.text, scope, 8, floor=CANDIDATE_FLOOR)
                scored = await judge.score(question.text, [passage_dict(p) for p in found.passages])
                best[question] = scored[0].score if scored else 0.0
    answerable = sorted(best[q] for q in ANSWERABLE)
    uncovered = sorted(best[q] for q in UNCOVERED)
    print(f"answerable: lowest best-sentence score {answerable[0]:.3f} (then {answerable[1]:.3f}, {answerable[2]:.3f})")
    print(f"uncovered:  highest best-sentence score {uncovered[-1]:.3f} (then {uncovered[-2]:.3f})")
    passing = sum(s >= ANSWER_THRESHOLD for s in answerable)
    below = sum(s < ANSWER_THRESHOLD for s in uncovered)
    print(f"threshold {ANSWER_THRESHOLD}: {passing}/{len(answerable)} answerable pass, ", end="")
    print(f"{below}/{len(uncovered)} uncovered stay below")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("embedded", "fake-ollama"), default="embedded")
    parser.add_argument("--show", action="store_true", help="print every question, answer and verdict")
    parser.add_argument("--calibrate", action="store_true", help="print the scores behind the relevance threshold")
    args = parser.parse_args()
    asyncio.run(calibrate() if args.calibrate else main(args.model, args.show))
