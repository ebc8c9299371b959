"""POST /v1/embeddings, driven by OpenAI's own client and LangChain's
OpenAIEmbeddings: the appliance's MiniLM vectors, the same its knowledge bases
are searched with."""

from __future__ import annotations

import base64
import uuid

import httpx
import numpy as np
import openai
import pytest
from langchain_openai import OpenAIEmbeddings

from appliance.knowledge.embeddings import cosine
from appliance.store.audit import Actor
from tests.support.turns import openai_client

MODEL = "all-minilm-l6-v2"
TOPICS = ["the warehouse", "a holiday request", "the VPN", "printer toner", "an invoice", "the fire drill",
          "parking permits", "the onboarding checklist", "a broken laptop", "quarterly targets"]  # fmt: skip
TEXTS = [f"Question {i}: what should I know about {TOPICS[i % 10]}{'?' * (i % 3)}" for i in range(100)]


@pytest.fixture(scope="module")
def app(librarian_app):
    return librarian_app


@pytest.fixture(scope="module")
async def key(app) -> str:
    _, secret = await app.runtime.keys.create(f"emb-{uuid.uuid4().hex[:6]}", actor=Actor.host())
    return secret


@pytest.fixture(scope="module")
def client(app, key) -> openai.AsyncOpenAI:
    return openai_client(app, key)


def own_vectors(app, texts: list[str]) -> list[list[float]]:
    """What retrieval embeds a question with."""
    return app.runtime.knowledge.retriever.embedder.embed(texts)


def assert_same(got: list[list[float]], want: list[list[float]]) -> None:
    assert len(got) == len(want)
    assert min(cosine(a, b) for a, b in zip(got, want, strict=True)) > 0.999


async def test_models_lists_the_embedding_model_with_its_dimensions(client):
    listed = {m.id: m for m in (await client.models.list()).data}
    assert listed[MODEL].model_extra["dimensions"] == 384
    assert (await client.models.retrieve(MODEL)).id == MODEL


@pytest.mark.parametrize("encoding_format", [None, "float", "base64"])
async def test_a_hundred_texts_embed_as_retrieval_embeds_them(app, client, encoding_format):
    extra = {"encoding_format": encoding_format} if encoding_format else {}  # the client's default: base64
    response = await client.embeddings.create(model=MODEL, input=TEXTS, **extra)
    assert [d.index for d in response.data] == list(range(100))
    got = [d.embedding for d in response.data]
    if encoding_format == "base64":  # asked for, the client hands it over as sent: little-endian float32
        got = [np.frombuffer(base64.b64decode(e), dtype="<f4").tolist() for e in got]
    assert_same(got, own_vectors(app, TEXTS))
    counted = sum(app.runtime.knowledge.retriever.embedder.token_counts(TEXTS))
    assert response.usage.prompt_tokens == response.usage.total_tokens == counted > 100
    assert response.model == MODEL


async def test_one_string_is_one_embedding(app, client):
    response = await client.embeddings.create(model=MODEL, input="Where is the fire exit?", encoding_format="float")
    [only] = response.data
    assert len(only.embedding) == 384
    assert_same([only.embedding], own_vectors(app, ["Where is the fire exit?"]))


async def test_langchain_openai_embeddings_work_unchanged(app, key):
    embeddings = OpenAIEmbeddings(
        model=MODEL,
        base_url=f"{app.url}/v1",
        api_key=key,
        check_embedding_ctx_length=False,  # else it counts tokens with tiktoken, which downloads its tables
        max_retries=0,
        http_async_client=httpx.AsyncClient(trust_env=False),
        http_client=httpx.Client(trust_env=False),
    )
    assert_same(await embeddings.aembed_documents(TEXTS[:10]), own_vectors(app, TEXTS[:10]))
    assert_same([await embeddings.aembed_query(TEXTS[0])], own_vectors(app, TEXTS[:1]))


@pytest.mark.parametrize(
    ("body", "status", "param", "says"),
    [
        ({"input": [[101, 2054]]}, 400, "input", "token arrays"),
        ({"input": [101, 2054, 102]}, 400, "input", "token arrays"),
        ({"input": ""}, 400, "input", "empty"),
        ({"input": ["fine", ""]}, 400, "input", "input[1] is empty"),
        ({"input": []}, 400, "input", "non-empty"),
        ({"input": ["x"] * 2049}, 400, "input", "at most 2048"),
        ({"input": "x", "dimensions": 128}, 400, "dimensions", "384"),
        ({"input": "x", "encoding_format": "int8"}, 400, None, "encoding_format"),
        ({"input": "x", "model": "agent"}, 404, "model", MODEL),
    ],
)
async def test_bad_embedding_requests_get_openais_error_shape(app, key, body, status, param, says):
    async with httpx.AsyncClient(base_url=app.url, trust_env=False) as raw:
        response = await raw.post(
            "/v1/embeddings", headers={"Authorization": f"Bearer {key}"}, json={"model": MODEL} | body
        )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["type"] == ("invalid_request_error" if status == 400 else error["type"])
    if param:
        assert error["param"] == param
    assert says in error["message"]


async def test_the_embedding_model_cannot_chat(client):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["param"] == "model"
    assert "/v1/embeddings" in caught.value.body["message"]
