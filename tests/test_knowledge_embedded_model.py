"""The knowledge graph with the real embedded model (SmolLM2 under llama.cpp):
whatever path its constrained decisions take, the run ends in a legal state
and every [n] in the answer has its citation."""

from __future__ import annotations

import re

import pytest

from appliance.agent.rag_prompts import refusal
from tests.support.corpus import write_corpus
from tests.support.turns import new_kb, new_thread, turn, upload


@pytest.fixture(scope="module")
async def embedded_app(databases, chroma_url, tmp_path_factory):
    from tests.support.app import make_settings, serve_app

    settings = make_settings(tmp_path_factory.mktemp("embedded"), databases.create(), chroma_url, max_answer_tokens=48)
    async with serve_app(settings) as served:  # no model given: the configured SmolLM2
        yield served


async def test_real_model_answer_cites_exactly_the_sources_it_marks(embedded_app, tmp_path):
    client = embedded_app.client
    kb_id = await new_kb(client, "company")
    for name, path in write_corpus(tmp_path).items():
        assert (await upload(client, kb_id, name, path.read_bytes())).status_code == 201

    tid = await new_thread(client, knowledge_bases=[kb_id])
    values = await turn(client, tid, "How many pallets does the Rotterdam warehouse store?")
    answer = values["messages"][-1]
    assert answer["type"] == "ai" and answer["content"].strip()
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer["content"])}
    assert markers == {c["index"] for c in values["citations"]}
    tried = [r["query"] for r in values["retrievals"]]
    if values["citations"]:  # generate: cited passages from the corpus
        assert {c["source"] for c in values["citations"]} <= {"handbook.md", "faq.html", "hours.txt", "report.pdf"}
    elif tried:  # refuse: every search graded irrelevant
        assert answer["content"] == refusal(tried) and len(tried) == 2
    # else: plan judged it small talk and respond answered without documents


async def test_openai_usage_counts_the_whole_prompt_the_model_read_passages_included(embedded_app, tmp_path):
    from tests.support.turns import openai_client

    client = embedded_app.client
    kb_id = await new_kb(client, "usage")
    for name, path in write_corpus(tmp_path).items():
        assert (await upload(client, kb_id, name, path.read_bytes())).status_code == 201
    question = "How many pallets does the Rotterdam warehouse store?"
    completion = await openai_client(embedded_app, embedded_app.admin_key).chat.completions.create(
        model="agent", messages=[{"role": "user", "content": question}], extra_body={"knowledge_bases": [kb_id]}
    )
    assert completion.model_extra["citations"]  # answered from a passage the model read
    count = embedded_app.runtime.model.count_tokens
    read = count(embedded_app.runtime.settings.system_prompt) + count(question) + count("48000 pallets")
    # Not the question alone: the system prompt and the passages are counted too.
    assert completion.usage.prompt_tokens > read
    assert completion.usage.completion_tokens > 0
