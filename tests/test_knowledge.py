"""Knowledge bases end to end: real PostgreSQL, a real Chroma server, the real
MiniLM embeddings, and the agent's graph driven by a scripted librarian."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from appliance.agent.rag_prompts import refusal
from appliance.store.knowledge import ChunkFilter
from tests.support.corpus import HANDBOOK_MD, pdf_bytes, write_corpus
from tests.support.librarian import Librarian, answer_to
from tests.support.turns import new_kb, new_thread, stream, turn, upload

PALLETS = "How many pallets does the Rotterdam warehouse hold?"
UNCOVERED = "What is the capital of Australia?"
FROM_HOME = "How do I connect to the company network from home?"
FROM_HOME_REWRITE = "WireGuard VPN profile"


@pytest.fixture(scope="module")
async def app(databases, chroma_url, tmp_path_factory):
    from tests.support.app import serve_scripted

    librarian = Librarian(rewrites={FROM_HOME: FROM_HOME_REWRITE}, distrust_first_search={FROM_HOME})
    async with serve_scripted(
        tmp_path_factory.mktemp("knowledge"),
        databases.create(),
        chroma_url,
        delay=0,
        reply=librarian,
        max_document_bytes=200_000,
    ) as served:
        yield served


@pytest.fixture(scope="module")
async def corpus_kb(app, tmp_path_factory) -> str:
    kb_id = await new_kb(app.client, "company")
    for name, path in write_corpus(tmp_path_factory.mktemp("corpus")).items():
        response = await upload(app.client, kb_id, name, path.read_bytes())
        assert response.status_code == 201, response.text
    return kb_id


def vectors_of(app, document_id: str) -> list[str]:
    return app.runtime.knowledge.ingestor.index.collection.get(where={"document_id": document_id}, include=[])["ids"]


async def test_mixed_formats_are_ingested_with_titles_pages_and_chunks(app, corpus_kb):
    documents = {d["source"]: d for d in (await app.client.get(f"/knowledge-bases/{corpus_kb}/documents")).json()}
    assert set(documents) == {"handbook.md", "faq.html", "hours.txt", "report.pdf"}
    assert all(d["status"] == "ready" and d["chunk_count"] > 0 for d in documents.values())
    assert documents["report.pdf"]["pages"] == 2
    assert documents["handbook.md"]["title"] == "Employee Handbook"
    assert documents["faq.html"]["title"] == "IT FAQ"
    assert documents["report.pdf"]["media_type"] == "application/pdf"


async def test_search_finds_the_fact_on_page_two_of_the_pdf(app, corpus_kb):
    response = await app.client.post(f"/knowledge-bases/{corpus_kb}/search", json={"query": PALLETS, "k": 3})
    assert response.status_code == 200, response.text
    top = response.json()["results"][0]
    assert (top["source"], top["page"]) == ("report.pdf", 2)
    assert "48000 pallets" in top["text"]
    assert set(top) >= {"document_id", "source", "page", "heading", "text", "score"}


async def test_search_keeps_headings_and_honours_source_filters(app, corpus_kb):
    body = {"query": "VPN WireGuard profile", "k": 5}
    results = (await app.client.post(f"/knowledge-bases/{corpus_kb}/search", json=body)).json()["results"]
    assert results[0]["heading"] == "IT FAQ > VPN"
    filtered = await app.client.post(f"/knowledge-bases/{corpus_kb}/search", json=body | {"sources": ["hours.txt"]})
    assert {r["source"] for r in filtered.json()["results"]} <= {"hours.txt"}


async def test_relevance_floor_drops_unrelated_chunks(app, corpus_kb):
    body = {"query": "quantum chromodynamics lattice gauge theory", "k": 5}
    results = (await app.client.post(f"/knowledge-bases/{corpus_kb}/search", json=body)).json()["results"]
    assert results == []


async def test_answer_cites_the_pdf_and_page_that_hold_it(app, corpus_kb):
    tid = await new_thread(app.client, knowledge_bases=[corpus_kb])
    values = await turn(app.client, tid, PALLETS)
    [citation] = values["citations"]
    # The librarian quotes its first source: an answer the source supports, so it is kept as written.
    assert values["messages"][-1]["content"] == answer_to(PALLETS, citation["text"])
    assert values["answer_mode"] == "generated"
    assert citation["index"] == 1
    assert (citation["source"], citation["page"]) == ("report.pdf", 2)
    assert "48000 pallets" in citation["text"]
    assert set(citation) >= {"index", "document_id", "source", "page", "heading", "text", "spans"}
    # The span is the very sentence that supports the answer.
    [span] = citation["spans"]
    assert citation["text"][span["start"] : span["end"]] == (
        "The Rotterdam warehouse stores 48000 pallets and opened in March 2019."
    )
    # The answering prompt carried the numbered source.
    prompt = app.chat.answer_prompts()[-1][-1].text
    assert "[1] (report.pdf, page 2)" in prompt


async def test_uncovered_question_gets_an_honest_refusal_after_the_retries(app, corpus_kb):
    tid = await new_thread(app.client, knowledge_bases=[corpus_kb])
    values = await turn(app.client, tid, UNCOVERED)
    assert values["citations"] == []
    assert values["messages"][-1]["content"] == refusal([r["query"] for r in values["retrievals"]])
    assert len(values["retrievals"]) == 2
    assert all(r["relevant"] == 0 for r in values["retrievals"])


async def test_irrelevant_first_search_is_rewritten_and_searched_again(app, corpus_kb):
    tid = await new_thread(app.client, knowledge_bases=[corpus_kb])
    values = await turn(app.client, tid, FROM_HOME)
    first, second = values["retrievals"]
    assert first["query"] == FROM_HOME and first["found"] > 0 and first["relevant"] == 0
    assert second["query"] == FROM_HOME_REWRITE and second["relevant"] >= 1
    assert values["citations"][0]["source"] == "faq.html"
    assert values["citations"][0]["heading"] == "IT FAQ > VPN"
    # The loop is in the thread's history: grade sent the run to rewrite, rewrite back to retrieve.
    history = (await app.client.get(f"/threads/{tid}/history", params={"limit": 50})).json()
    steps = [(s["next"], s["values"].get("query")) for s in reversed(history)]
    assert (["rewrite"], FROM_HOME) in steps
    assert (["retrieve"], FROM_HOME_REWRITE) in steps
    assert steps.index((["rewrite"], FROM_HOME)) < steps.index((["retrieve"], FROM_HOME_REWRITE))


async def test_run_config_knowledge_bases_override_the_thread_metadata(app, corpus_kb):
    tid = await new_thread(app.client, knowledge_bases=[])  # none: a plain conversation
    plain = await turn(app.client, tid, PALLETS)
    assert plain["citations"] == [] and plain["retrievals"] == []
    cited = await turn(app.client, tid, PALLETS, config={"configurable": {"knowledge_bases": [corpus_kb]}})
    assert cited["citations"][0]["source"] == "report.pdf"


async def test_greeting_is_answered_without_searching(app, corpus_kb):
    tid = await new_thread(app.client, knowledge_bases=[corpus_kb])
    values = await turn(app.client, tid, "hello there")
    assert values["retrievals"] == [] and values["citations"] == []
    assert values["messages"][-1]["content"].startswith("Hello!")


async def test_unknown_or_foreign_knowledge_base_on_a_run_is_404_naming_it(app, corpus_kb):
    tid = await new_thread(app.client)
    body = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi"}]}}
    missing = str(uuid.uuid4())
    response = await app.client.post(
        f"/threads/{tid}/runs/wait", json=body | {"config": {"configurable": {"knowledge_bases": [missing]}}}
    )
    assert response.status_code == 404
    assert missing in response.json()["detail"]
    other = await app.tenant_client("someone-else")
    async with other:
        foreign_tid = await new_thread(other, knowledge_bases=[corpus_kb])
        response = await other.post(f"/threads/{foreign_tid}/runs/wait", json=body)
        assert response.status_code == 404
        assert "metadata.knowledge_bases" in response.json()["detail"]
        assert (await other.get(f"/knowledge-bases/{corpus_kb}")).status_code == 404


async def test_stream_shows_each_node_as_it_runs_and_only_answer_tokens(app, corpus_kb):
    tid = await new_thread(app.client, knowledge_bases=[corpus_kb])
    body = {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": PALLETS}]},
        "stream_mode": ["custom", "messages-tuple", "updates"],
    }
    events = await stream(app.client, tid, body)
    progress = [data["node"] for event, data in events if event == "custom"]
    assert progress == ["plan", "retrieve", "grade", "generate", "verify"]
    updated = [next(iter(data)) for event, data in events if event == "updates"]
    assert updated == ["plan", "retrieve", "grade", "generate", "verify"]
    # The draft never streams: the checked answer arrives whole, once.
    answers = [data[0] for event, data in events if event == "messages"]
    assert {data[1]["langgraph_node"] for event, data in events if event == "messages"} == {"verify"}
    final = next(data for event, data in reversed(events) if event == "updates")["verify"]["messages"][-1]
    assert [a["content"] for a in answers] == [final["content"]]


async def test_reingesting_unchanged_changed_and_deleted_documents(app):
    kb_id = await new_kb(app.client)
    created = (await upload(app.client, kb_id, "handbook.md", HANDBOOK_MD.encode())).json()
    document_id = created["document_id"]
    before = sorted(vectors_of(app, document_id))

    unchanged = await upload(app.client, kb_id, "handbook.md", HANDBOOK_MD.encode())
    assert unchanged.status_code == 200
    assert unchanged.json()["outcome"] == "unchanged"
    assert unchanged.json()["updated_at"] == created["updated_at"]
    assert sorted(vectors_of(app, document_id)) == before

    changed_text = HANDBOOK_MD.replace("27 days of paid leave", "31 days of paid leave")
    replaced = await upload(app.client, kb_id, "handbook.md", changed_text.encode())
    assert replaced.status_code == 201 and replaced.json()["outcome"] == "replaced"
    assert replaced.json()["document_id"] == document_id
    after = vectors_of(app, document_id)
    assert after and not set(after) & set(before)  # the old generation's vectors are gone
    hits = (
        await app.client.post(f"/knowledge-bases/{kb_id}/search", json={"query": "days of paid leave", "k": 10})
    ).json()["results"]
    assert any("31 days" in h["text"] for h in hits)
    assert not any("27 days" in h["text"] for h in hits)

    assert (await app.client.delete(f"/knowledge-bases/{kb_id}/documents/{document_id}")).status_code == 204
    assert vectors_of(app, document_id) == []
    assert (await app.client.get(f"/knowledge-bases/{kb_id}/documents")).json() == []
    assert (await app.client.get(f"/knowledge-bases/{kb_id}/documents/{document_id}")).status_code == 404
    search = await app.client.post(f"/knowledge-bases/{kb_id}/search", json={"query": "paid leave"})
    assert search.json()["results"] == []


async def test_searches_during_replacements_see_one_version_of_a_document(app):
    kb_id = await new_kb(app.client)
    versions = [HANDBOOK_MD.replace("27 days", f"{20 + i} days") for i in range(5)]
    assert (await upload(app.client, kb_id, "handbook.md", versions[0].encode())).status_code == 201
    retriever = app.runtime.knowledge.retriever
    scope = ChunkFilter(knowledge_base_ids=[uuid.UUID(kb_id)])
    generations_seen: list[set[str]] = []
    replaced = asyncio.Event()

    async def keep_searching() -> None:
        while not replaced.is_set():
            found = await retriever.search("paid leave and travel expenses", scope, 10, floor=-1.0)
            generations_seen.append({p.chunk.chunk_id.split(":")[1] for p in found.passages})

    searching = asyncio.create_task(keep_searching())
    for text in versions[1:]:
        assert (await upload(app.client, kb_id, "handbook.md", text.encode())).status_code == 201
        await asyncio.sleep(0.05)
    replaced.set()
    await searching
    assert all(len(generations) == 1 for generations in generations_seen)
    assert len(set.union(*generations_seen)) > 1  # the searches did overlap the replacements


async def test_vectors_a_crash_left_unpublished_are_never_returned_and_swept(app):
    """A crash after the vectors reached Chroma but before PostgreSQL published
    them: queries must not see them, and the next start's sweep removes them."""
    kb_id = await new_kb(app.client)
    document = (await upload(app.client, kb_id, "hours.txt", b"Office hours are 8:00 to 17:00.")).json()
    knowledge = app.runtime.knowledge
    stray = f"{document['document_id']}:99:0"
    [vector] = await knowledge.ingestor.embedder.aembed(["The launch code of the rocket is 7431."])
    metadata = {"knowledge_base_id": kb_id, "document_id": document["document_id"], "source": "hours.txt"}
    await knowledge.ingestor.index.add([stray], [vector], [metadata | {"generation": 99, "chunk_index": 0}])

    body = {"query": "What is the launch code of the rocket?", "k": 5, "mode": "dense"}
    results = (await app.client.post(f"/knowledge-bases/{kb_id}/search", json=body)).json()["results"]
    assert stray not in {r["chunk_id"] for r in results}
    assert stray in vectors_of(app, document["document_id"])

    assert await knowledge.ingestor.sweep() >= 1
    assert stray not in vectors_of(app, document["document_id"])
    assert len(vectors_of(app, document["document_id"])) == document["chunk_count"]


async def test_deleting_a_knowledge_base_removes_its_documents_and_vectors(app):
    kb_id = await new_kb(app.client)
    document = (await upload(app.client, kb_id, "handbook.md", HANDBOOK_MD.encode())).json()
    assert (await app.client.delete(f"/knowledge-bases/{kb_id}")).status_code == 204
    assert vectors_of(app, document["document_id"]) == []
    assert (await app.client.get(f"/knowledge-bases/{kb_id}")).status_code == 404
    assert kb_id not in {kb["knowledge_base_id"] for kb in (await app.client.get("/knowledge-bases")).json()}


@pytest.mark.parametrize(
    ("name", "data", "status", "says"),
    [
        ("tool.exe", b"MZ\x90\x00binary", 415, "not supported"),
        ("notes.txt", b"  \n", 422, "empty"),
        ("photo.txt", b"\x89PNG\x00\x00binary", 415, "binary"),
        ("latin1.txt", "caf\u00e9".encode("latin-1"), 422, "UTF-8"),
        ("locked.pdf", pdf_bytes(["secret"], password="pw"), 422, "password"),
        ("broken.pdf", b"%PDF-1.4\n1 0 obj garbage", 422, "damaged"),
        ("fake.pdf", b"just text, not a pdf", 422, "not a PDF"),
        ("big.txt", b"word " * 50_000, 413, "limit"),
    ],
)
async def test_bad_files_get_a_clear_4xx_and_leave_nothing_behind(app, name, data, status, says):
    kb_id = await new_kb(app.client)
    response = await upload(app.client, kb_id, name, data)
    assert response.status_code == status, response.text
    assert name in response.json()["detail"] and says in response.json()["detail"]
    assert (await app.client.get(f"/knowledge-bases/{kb_id}/documents")).json() == []


async def test_upload_without_the_file_field_or_into_a_missing_base_is_refused(app):
    kb_id = await new_kb(app.client)
    response = await app.client.post(f"/knowledge-bases/{kb_id}/documents", files={"document": ("a.txt", b"hi")})
    assert response.status_code == 400, response.text
    assert "file" in response.json()["detail"], response.text
    missing = await upload(app.client, str(uuid.uuid4()), "a.txt", b"hello")
    assert missing.status_code == 404


async def test_knowledge_base_names_are_unique_per_tenant(app):
    await new_kb(app.client, "shared-name")
    again = await app.client.post("/knowledge-bases", json={"name": "shared-name"})
    assert again.status_code == 409 and "shared-name" in again.json()["detail"]
    assert (await app.client.post("/knowledge-bases", json={"name": ""})).status_code == 400
    other = await app.tenant_client("another-team")
    async with other:
        assert (await other.post("/knowledge-bases", json={"name": "shared-name"})).status_code == 201
