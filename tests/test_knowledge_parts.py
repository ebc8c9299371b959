"""The pure parts of the knowledge pipeline: extraction, chunking, fusion,
citations and constrained choices; and the embedded model obeying a grammar."""

from __future__ import annotations

import re

import pytest

from appliance.agent.citations import cite
from appliance.agent.rag_prompts import GRADE_CHOICES, clean_query, grade_prompt
from appliance.knowledge.chunking import chunk_sections
from appliance.knowledge.extract import Section, extract
from appliance.knowledge.retrieval import reciprocal_rank_fusion
from appliance.knowledge.text import Span
from appliance.llm.choices import choice_grammar, parse_choice
from tests.support.corpus import FAQ_HTML, HANDBOOK_MD, PDF_PAGES, pdf_bytes


def test_html_keeps_heading_paths_and_drops_scripts_styles_and_navigation():
    extracted = extract("faq.html", FAQ_HTML.encode())
    assert extracted.title == "IT FAQ"
    text = " ".join(s.text for s in extracted.sections)
    assert "console.log" not in text and "color: red" not in text and "Home | Search" not in text
    assert [s.heading for s in extracted.sections] == ["IT FAQ > VPN", "IT FAQ > Printers"]
    assert "Gutenberg and prints" in extracted.sections[1].text  # inline tags do not split text


def test_markdown_sections_follow_nested_headings_and_keep_code_fences_whole():
    source = HANDBOOK_MD + "\n## Tools\n\n```\nmake test\n\nmake run\n```\n\n### Editors\n\nUse any editor.\n"
    sections = extract("handbook.md", source.encode()).sections
    headings = [s.heading for s in sections]
    assert headings[0] == "Employee Handbook"
    assert "Employee Handbook > Leave" in headings
    fence = next(s for s in sections if s.text.startswith("```"))
    assert "make test" in fence.text and "make run" in fence.text
    assert sections[-1].heading == "Employee Handbook > Tools > Editors"


def test_pdf_sections_carry_their_page_numbers():
    extracted = extract("report.pdf", pdf_bytes(PDF_PAGES))
    assert extracted.pages == 2
    assert {s.page for s in extracted.sections} == {1, 2}
    assert any("48000 pallets" in s.text and s.page == 2 for s in extracted.sections)


def test_chunks_never_span_two_headings_or_pages():
    sections = [Section("alpha " * 30, "A", 1), Section("beta " * 30, "A", 2), Section("gamma " * 30, "B", 2)]
    chunks = chunk_sections(sections, size=100, overlap=10)
    assert [(c.heading, c.page) for c in chunks] == [("A", 1), ("A", 2), ("B", 2)]
    assert all(len(set(c.text.split())) == 1 for c in chunks)


def test_paragraphs_pack_whole_and_long_ones_split_with_overlap():
    short = [Section(f"p{i} " + "word " * 20) for i in range(4)]  # 21 words each
    chunks = chunk_sections(short, size=50, overlap=5)
    assert all(c.words <= 50 for c in chunks)
    assert chunks[0].text.startswith("p0") and "p1" in chunks[0].text and "p2" not in chunks[0].text
    long = [Section(" ".join(f"w{i}" for i in range(250)))]
    pieces = chunk_sections(long, size=100, overlap=20)
    assert all(c.words <= 100 for c in pieces)
    assert pieces[1].text.split()[:20] == pieces[0].text.split()[-20:]
    covered = {w for c in pieces for w in c.text.split()}
    assert covered == {f"w{i}" for i in range(250)}


def test_overlap_must_be_smaller_than_the_chunk():
    with pytest.raises(ValueError, match="overlap"):
        chunk_sections([Section("x")], size=10, overlap=10)


def test_reciprocal_rank_fusion_rewards_agreement_between_rankings():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "d", "e"]])
    assert max(fused, key=fused.get) == "b"  # found by both beats first in one
    assert fused["a"] > fused["d"]


def test_citations_keep_valid_markers_drop_invalid_ones_and_carry_their_spans():
    passages = [
        {"source": "a.pdf", "page": 2, "heading": "", "text": "A", "document_id": "d1"},
        {"source": "b.md", "page": None, "heading": "H", "text": "B", "document_id": "d2"},
    ]
    text, citations = cite("Fact one [2]. Fact two [7].", passages)
    assert text == "Fact one [2]. Fact two ."
    assert [(c["index"], c["source"]) for c in citations] == [(2, "b.md")]
    assert citations[0]["spans"] == []
    # A supporting sentence cites its passage, with the span, even where the marker sits elsewhere.
    text, citations = cite("Fact one [2].", passages, [(1, Span(0, 1, "A")), (2, Span(0, 1, "B"))])
    assert [(c["index"], c["spans"]) for c in citations] == [
        (1, [{"start": 0, "end": 1}]),
        (2, [{"start": 0, "end": 1}]),
    ]


def test_choices_parse_plain_words_json_and_strays():
    assert parse_choice(" Yes.", GRADE_CHOICES, "no") == "yes"
    assert parse_choice('{"choice": "no"}', GRADE_CHOICES, "yes") == "no"
    assert parse_choice("maybe", GRADE_CHOICES, "yes") == "yes"
    assert choice_grammar(["search", "chat"]) == 'root ::= "search" | "chat"'
    assert clean_query('Query: "vpn setup"\nmore', "fallback") == "vpn setup"
    assert clean_query("   ", "fallback") == "fallback"


@pytest.fixture(scope="module")
def embedded_model():
    from appliance.llm.provider import build_language_model
    from appliance.settings import load_settings

    return build_language_model(load_settings(env={"APPLIANCE_MAX_ANSWER_TOKENS": "96"}))


async def test_embedded_model_decides_within_its_grammar(embedded_model):
    """SmolLM2 under a GBNF grammar can only answer one of the choices."""
    passage = {"text": "The Rotterdam warehouse stores 48000 pallets."}
    for question in ("How many pallets are in Rotterdam?", "Who painted the Mona Lisa?"):
        reply = await embedded_model.decider(GRADE_CHOICES).ainvoke(grade_prompt(question, passage))
        assert reply.text in GRADE_CHOICES


def test_onnx_int8_backend_is_exported_locally_and_agrees_with_torch(tmp_path):
    from appliance.knowledge.embeddings import OnnxEmbedder, TorchEmbedder, load_embedder
    from appliance.settings import load_settings

    settings = load_settings(env={"APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_EMBEDDING_BACKEND": "onnx-int8"})
    onnx = load_embedder(settings)
    assert isinstance(onnx, OnnxEmbedder)
    assert list((tmp_path / "models").glob("*.int8.onnx"))  # exported under the data directory
    torch = TorchEmbedder(onnx.path)
    texts = ["The Rotterdam warehouse stores 48000 pallets.", "Connect to the VPN with WireGuard.", "hello"]
    for a, b in zip(onnx.embed(texts), torch.embed(texts), strict=True):
        assert sum(x * y for x, y in zip(a, b, strict=True)) > 0.97


async def test_embedded_model_drafts_end_by_citing_a_source(embedded_model):
    """SmolLM2 forgets the markers; its drafts are decoded under a grammar that makes it cite."""
    from langchain_core.messages import HumanMessage

    from appliance.agent.rag_prompts import grounded_question

    sources = [{"source": "r.pdf", "page": 2, "text": "The Rotterdam warehouse stores 48000 pallets."},
               {"source": "h.md", "text": "Employees receive 27 days of paid leave per year."}]  # fmt: skip
    prompt = [HumanMessage(grounded_question("How many pallets are in Rotterdam?", sources))]
    reply = await embedded_model.citer(len(sources)).ainvoke(prompt)
    assert re.fullmatch(r"[^\[\]\n]+ \[[12]\]", reply.text), reply.text
