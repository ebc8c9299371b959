"""Right answers on a model trusted only to write: relevance from retrieval
evidence, small talk by rules, second searches by lexical expansion, every
draft checked against its sources with an extractive fallback, and citations
down to the sentence. Real PostgreSQL, Chroma and MiniLM; a scripted model
that records what it was asked."""

from __future__ import annotations

import contextlib

import openai
import pytest

from appliance.agent.evidence import EvidenceJudge, check_answer
from appliance.agent.routing import is_small_talk
from appliance.knowledge.expansion import expand
from appliance.knowledge.text import content_terms, sentences
from tests.support.corpus import write_corpus
from tests.support.librarian import UNSUPPORTED, Librarian, answer_to
from tests.support.scripted_model import prompt_kind
from tests.support.turns import new_kb, new_thread, turn, upload

PALLETS = "How many pallets can the Rotterdam site hold?"
PALLET_SENTENCE = "The Rotterdam warehouse stores 48000 pallets and opened in March 2019."


@pytest.fixture(scope="module")
async def small(databases, chroma_url, tmp_path_factory):
    """The appliance on a model the manifest trusts only to generate."""
    from tests.support.app import serve_scripted

    librarian = Librarian()
    async with serve_scripted(
        tmp_path_factory.mktemp("small"),
        databases.create(),
        chroma_url,
        delay=0,
        reply=librarian,
        capabilities=frozenset({"generate"}),
    ) as served:
        served.librarian = librarian
        kb_id = await new_kb(served.client, "company")
        for name, path in write_corpus(tmp_path_factory.mktemp("corpus")).items():
            assert (await upload(served.client, kb_id, name, path.read_bytes())).status_code == 201
        served.kb_id = kb_id
        yield served


@contextlib.contextmanager
def unsupported_drafts(app):
    app.librarian.unsupported = True
    try:
        yield
    finally:
        app.librarian.unsupported = False


def asked(app, since: int) -> list[str]:
    return [prompt_kind(p) for p in app.chat.prompts[since:]]


async def ask(app, text: str) -> dict:
    tid = await new_thread(app.client, knowledge_bases=[app.kb_id])
    return await turn(app.client, tid, text)


# Routing and relevance on labelled examples --------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        "hello",
        "Hi there!",
        "thanks a lot",
        "Thank you, that helps",
        "good morning everyone",
        "ok, great",
        "bye",
        "Hello, my name is Lin",
    ],  # fmt: skip
)
def test_small_talk_is_not_searched(message):
    assert is_small_talk(message)


@pytest.mark.parametrize(
    "message",
    [
        "hi, where is the VPN profile?",
        "Thanks! And how many pallets fit in Rotterdam?",
        "VPN",
        "printer broken",
        "When is lunch?",
        "hello can you explain the leave policy",
    ],  # fmt: skip
)
def test_anything_that_asks_is_searched(message):
    assert not is_small_talk(message)


# (question, passage, answers it?): none of these is in the answer-quality bench set.
LABELLED = [
    ("How many days off do I get a year?", "Leave. Employees receive 27 days of paid leave per year.", True),
    ("When is lunch served?", "The cafeteria serves lunch from 11:30 to 14:00.", True),
    ("What's the printer on floor three called?", "The printer on floor three is named Gutenberg.", True),
    ("How do I connect from home?", "VPN. Connect to the VPN with the WireGuard client from home.", True),
    ("What is the capital of Australia?", "The cafeteria serves lunch from 11:30 to 14:00.", False),
    ("Who wrote the employee handbook?", "Travel expenses must be filed within 30 days using form EX-7.", False),
    ("How much does the parking permit cost?", "Office hours are 8:00 to 17:00, Monday to Friday.", False),
    ("What is the guest wifi password?", "Connect to the VPN with the WireGuard client.", False),
]


@pytest.mark.parametrize(("question", "text", "answers"), LABELLED)
async def test_relevance_thresholds_on_labelled_examples(small, question, text, answers):
    judge = EvidenceJudge(small.runtime.knowledge.retriever.embedder)
    passage = {"chunk_id": "c1", "text": text, "heading": "", "title": "", "source": "x.txt"}
    scored = await judge.score(question, [passage])
    assert bool(judge.answering(scored)) is answers, scored


def test_lexical_expansion_keeps_known_words_and_mends_unknown_ones():
    vocabulary = {"install": 7, "installer": 2, "softwar": 9, "printer": 4, "expens": 3}
    # A typo and another form meet the knowledge base's words; "please" meets nothing and is dropped.
    asked = [("instal", "instal"), ("Software", "softwar"), ("expensis", "expensi"), ("please", "pleas")]
    assert expand(asked, vocabulary) == ["install", "installer", "software", "expens"]
    # Nothing the knowledge base knows: the question's own keywords.
    assert expand([("capital", "capit"), ("Australia", "australia")], vocabulary) == ["capital", "australia"]


def test_sentences_carry_their_offsets_and_abbreviations_do_not_cut():
    text = "Call Dr. Reyes on channel 6. It runs 3.5 hours! Then stop"
    spans = sentences(text)
    assert [s.text for s in spans] == ["Call Dr. Reyes on channel 6.", "It runs 3.5 hours!", "Then stop"]
    assert all(text[s.start : s.end] == s.text for s in spans)
    assert content_terms("Which bikes are charging?") == ["bike", "charg"]


# The answer check ------------------------------------------------------------------------


async def test_answer_check_needs_markers_support_and_the_answering_sentence(small):
    judge = EvidenceJudge(small.runtime.knowledge.retriever.embedder)
    passage = {"chunk_id": "c1", "heading": "Warehouses", "title": "", "source": "r.pdf",
               "text": f"Warehouses. {PALLET_SENTENCE} It runs three shifts a day."}  # fmt: skip
    answering = judge.answering(await judge.score(PALLETS, [passage]))
    assert answering and passage["text"][answering[0].start : answering[0].end] == PALLET_SENTENCE

    async def verdict(answer: str) -> str:
        return (await check_answer(judge, PALLETS, answer, [passage], answering)).reason

    assert await verdict("It stores 48000 pallets [1].") == "supported"
    assert await verdict("It stores 48000 pallets.") == "the answer cites no source"
    assert await verdict("[1]") == "the answer says nothing of substance"
    assert await verdict("How many pallets can the Rotterdam site hold [1]?") == "the answer only restates the question"
    assert "nothing in the cited sources says" in await verdict(
        "It stores 52000 pallets [1]."
    )  # a number no source states
    assert "nothing in the cited sources says" in await verdict(UNSUPPORTED)
    # True, cited, and beside the point: the shifts are not what was asked.
    assert await verdict("It runs three shifts a day [1].") == (
        "the answer does not use the passages' answer to the question"
    )


# End to end ------------------------------------------------------------------------------


async def test_a_supported_draft_is_kept_as_generated_and_the_model_judges_nothing(small):
    since = len(small.chat.prompts)
    values = await ask(small, PALLETS)
    [citation] = values["citations"]
    assert values["answer_mode"] == "generated"
    assert values["messages"][-1]["content"] == answer_to(PALLETS, citation["text"])
    assert values["messages"][-1]["response_metadata"]["answer_mode"] == "generated"
    [span] = citation["spans"]
    assert citation["text"][span["start"] : span["end"]] == PALLET_SENTENCE
    # The model was asked to write the answer and nothing else: no routing, no grading.
    assert asked(small, since) == ["answer"]


async def test_an_unsupported_draft_falls_back_to_the_sources_own_sentences(small):
    with unsupported_drafts(small):
        values = await ask(small, PALLETS)
    assert values["draft"] == UNSUPPORTED
    assert values["answer_mode"] == "extractive"
    answer = values["messages"][-1]["content"]
    assert f"“{PALLET_SENTENCE}” [1]" in answer and "moon" not in answer
    [citation] = values["citations"]
    assert (citation["index"], citation["source"], citation["page"]) == (1, "report.pdf", 2)
    [span] = citation["spans"]
    assert citation["text"][span["start"] : span["end"]] == PALLET_SENTENCE


async def test_an_uncovered_question_is_refused_after_a_lexical_second_search(small):
    since = len(small.chat.prompts)
    values = await ask(small, "What is the capital of Australia?")
    assert values["answer_mode"] == "refused" and values["citations"] == []
    first, second = values["retrievals"]
    assert first["query"] == "What is the capital of Australia?"
    assert second["query"] != first["query"] and second["relevant"] == 0
    assert asked(small, since) == []  # refused without asking the model anything


async def test_small_talk_is_answered_without_searching(small):
    values = await ask(small, "Thanks, that helps!")
    assert values["retrievals"] == [] and values["citations"] == []


async def test_openai_clients_get_the_same_checked_text_as_the_thread(small):
    client = openai.AsyncOpenAI(base_url=f"{small.url}/v1", api_key=small.admin_key, max_retries=0)
    with unsupported_drafts(small):
        completion = await client.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": PALLETS}]
        )
        stream = await client.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": PALLETS}], stream=True
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    text = completion.choices[0].message.content
    assert text.startswith("From the documents:") and PALLET_SENTENCE in text
    assert streamed == text  # the draft never reached the stream
    assert completion.model_extra["citations"][0]["spans"]
