"""The production model path (langchain-ollama) against a protocol-faithful
fake Ollama: tokens stream through, and every failure reaches the API client
as a clear JSON error with a fitting status, never a hang and never half a
turn in the history."""

from __future__ import annotations

import pytest

from tests.support.app import ollama_settings, serve_app
from tests.support.fake_ollama import MODEL, FakeOllama
from tests.support.services import free_port
from tests.support.turns import checkpoint_count, new_thread, stream, turn, user


@pytest.fixture(scope="module")
def fake_ollama():
    with FakeOllama() as fake:
        yield fake


@pytest.fixture(scope="module")
async def ollama_app(fake_ollama, databases, chroma_url, tmp_path_factory):
    settings = ollama_settings(
        tmp_path_factory.mktemp("ollama-app"), databases.create(), chroma_url, fake_ollama.url,
        ollama_timeout_s="1.5", ollama_connect_timeout_s="1",
    )  # fmt: skip
    async with serve_app(settings) as served:
        yield served


@pytest.fixture
async def thread(ollama_app, fake_ollama):
    fake_ollama.reset()
    tid = await new_thread(ollama_app.client)
    await turn(ollama_app.client, tid, "What is the capital of France?")
    fake_ollama.reset()
    yield tid
    fake_ollama.reset()
    fake_ollama.models = {
        MODEL: fake_ollama.models.get(MODEL) or "357c53fb659c5076de1d65ccb0b397446227b71a42be9d1603d46168015c9e4b"
    }


async def unchanged(app, tid: str, before: tuple[int, list]) -> None:
    state = (await app.client.get(f"/threads/{tid}/state")).json()
    assert (await checkpoint_count(app.runtime, tid), state["values"]["messages"]) == before
    assert (await app.client.get(f"/threads/{tid}")).json()["status"] == "idle"


async def snapshot(app, tid: str) -> tuple[int, list]:
    state = (await app.client.get(f"/threads/{tid}/state")).json()
    return await checkpoint_count(app.runtime, tid), state["values"]["messages"]


async def test_answer_streams_token_by_token_from_ollama_ndjson(ollama_app, fake_ollama, thread):
    events = await stream(
        ollama_app.client, thread, user("And of Italy?") | {"stream_mode": ["messages-tuple", "values"]}
    )
    pieces = [chunk["content"] for event, (chunk, _meta) in ((e, d) for e, d in events if e == "messages")]
    assert "".join(pieces) == fake_ollama.reply
    assert len([p for p in pieces if p]) == len(fake_ollama.reply.split(" "))
    sent = fake_ollama.chat_requests()[-1]["body"]
    assert sent["model"] == MODEL and sent["stream"] is True
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
    assert sent["messages"][-1]["content"] == "And of Italy?"
    assert sent["keep_alive"] == "30m"


async def test_missing_model_is_502_with_what_to_do(ollama_app, fake_ollama, thread):
    before = await snapshot(ollama_app, thread)
    fake_ollama.models = {}
    response = await ollama_app.client.post(f"/threads/{thread}/runs/wait", json=user("hello?"))
    assert response.status_code == 502
    body = response.json()
    assert body["error"] == "model_not_found" and MODEL in body["detail"] and "bundle" in body["detail"]
    ready = await ollama_app.client.get("/readyz")
    assert ready.status_code == 503 and not ready.json()["checks"]["model"]["ok"]
    assert MODEL in ready.json()["checks"]["model"]["detail"]
    await unchanged(ollama_app, thread, before)


async def test_busy_model_is_retried_then_503_with_retry_after(ollama_app, fake_ollama, thread):
    before = await snapshot(ollama_app, thread)
    fake_ollama.behaviour = "busy"
    response = await ollama_app.client.post(f"/threads/{thread}/runs/wait", json=user("hello?"))
    assert response.status_code == 503
    assert response.json()["error"] == "model_busy" and "busy" in response.json()["detail"]
    assert int(response.headers["retry-after"]) > 0
    assert len(fake_ollama.chat_requests()) == 3  # bounded retries
    await unchanged(ollama_app, thread, before)


async def test_a_briefly_busy_model_is_retried_and_the_turn_succeeds(ollama_app, fake_ollama, thread):
    fake_ollama.busy_for = 1
    values = await turn(ollama_app.client, thread, "second try works?")
    assert values["messages"][-1]["content"] == fake_ollama.reply
    assert len(fake_ollama.chat_requests()) == 2


async def test_error_line_mid_stream_is_502_and_the_turn_is_rolled_back(ollama_app, fake_ollama, thread):
    before = await snapshot(ollama_app, thread)
    fake_ollama.behaviour = "error_midstream"
    response = await ollama_app.client.post(f"/threads/{thread}/runs/wait", json=user("hello?"))
    assert response.status_code == 502
    assert "unexpected EOF" in response.json()["detail"]
    await unchanged(ollama_app, thread, before)

    events = await stream(ollama_app.client, thread, user("hello?") | {"stream_mode": "messages-tuple"})
    assert [e for e, _ in events][0] == "metadata"
    assert events[-1][0] == "error" and "unexpected EOF" in events[-1][1]["message"]
    assert any(e == "messages" for e, _ in events)  # some tokens had arrived before the error
    await unchanged(ollama_app, thread, before)


async def test_a_model_that_stops_answering_times_out_as_504(ollama_app, fake_ollama, thread):
    before = await snapshot(ollama_app, thread)
    fake_ollama.behaviour, fake_ollama.slow_seconds = "slow", 3.0
    response = await ollama_app.client.post(f"/threads/{thread}/runs/wait", json=user("hello?"))
    assert response.status_code == 504 and response.json()["error"] == "model_timeout"
    await unchanged(ollama_app, thread, before)


async def test_model_server_down_is_503_and_readyz_says_so(databases, chroma_url, tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"
    settings = ollama_settings(tmp_path, databases.create(), chroma_url, closed, ollama_connect_timeout_s="0.5")
    async with serve_app(settings) as app:
        tid = await new_thread(app.client)
        response = await app.client.post(f"/threads/{tid}/runs/wait", json=user("anyone there?"))
        assert response.status_code == 503
        assert response.json()["error"] == "model_unavailable" and closed in response.json()["detail"]
        ready = (await app.client.get("/readyz")).json()
        assert ready["checks"]["postgres"]["ok"] and ready["checks"]["chroma"]["ok"]
        assert not ready["checks"]["model"]["ok"] and "cannot be reached" in ready["checks"]["model"]["detail"]
        assert await checkpoint_count(app.runtime, tid) == 0


async def test_decisions_ask_ollama_for_json_constrained_to_the_choices(ollama_app, fake_ollama, tmp_path):
    from tests.support.corpus import HOURS_TXT
    from tests.support.turns import new_kb, upload

    kb_id = await new_kb(ollama_app.client)
    assert (await upload(ollama_app.client, kb_id, "hours.txt", HOURS_TXT.encode())).status_code == 201
    tid = await new_thread(ollama_app.client, knowledge_bases=[kb_id])
    fake_ollama.reset()
    values = await turn(ollama_app.client, tid, "When does the cafeteria serve lunch?")
    formats = [r["body"].get("format") for r in fake_ollama.chat_requests()]
    enums = [f["properties"]["choice"]["enum"] for f in formats if f]
    # Whether to search is a rule; whether a passage helps is the model's call, since
    # the manifest trusts qwen2.5:3b to decide.
    assert enums and all(e == ["yes", "no"] for e in enums)  # grade, passage by passage
    assert formats[-1] is None  # the answer itself is free text
    assert values["citations"][0]["source"] == "hours.txt"


async def test_the_description_lists_what_a_run_can_end_with_where_a_caller_gets_it(ollama_app):
    """wait and join answer with their run's outcome (a model failure above): each
    status a run can end with is described there, as schemathesis checks."""
    paths = (await ollama_app.client.get("/docs/openapi.json")).json()["paths"]
    for path, method in [
        ("/threads/{thread_id}/runs/wait", "post"),
        ("/runs/wait", "post"),
        ("/threads/{thread_id}/runs/{run_id}/join", "get"),
    ]:
        described = set(paths[path][method]["responses"])
        assert {"409", "502", "503", "504", "507"} <= described, (path, sorted(described))
