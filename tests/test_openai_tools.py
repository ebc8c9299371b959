"""Function calling through /v1/chat/completions, as OpenAI's Chat Completions
does it, driven by OpenAI's own client: the client's tools offered to the
model (the production path: langchain-ollama against the fake Ollama, which
answers with message.tool_calls as Ollama does), the calls handed back, the
results sent in the next request and answered from."""

from __future__ import annotations

import json
import uuid
from typing import Any

import openai
import pytest
from pydantic import BaseModel

from appliance.store.audit import Actor
from tests.support.app import ollama_settings, serve_app
from tests.support.fake_ollama import FakeOllama, ToolCalls
from tests.support.turns import openai_client

pytestmark = pytest.mark.timeout(120)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME_IN = {
    "type": "function",
    "function": {
        "name": "local_time",
        "description": "The local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
ASK = {"role": "user", "content": "What is the weather in Oslo?"}


class Model:
    """The fake Ollama's model: calls what ``plan(body)`` says while no tool
    result is in the prompt, then answers quoting the results; asked with a
    ``format`` (a forced call), answers with the call as JSON."""

    def __init__(self) -> None:
        self.plan = lambda body: [("get_weather", {"city": "Oslo"})]
        self.requests: list[dict[str, Any]] = []

    def __call__(self, body: dict[str, Any]):
        self.requests.append(body)
        results = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        wanted = body.get("format")
        if isinstance(wanted, dict) and "oneOf" in wanted:  # the provider forcing a call: JSON the schema allows
            first = wanted["oneOf"][0]["properties"]["tool"]["const"]
            return json.dumps({"tool": first, "arguments": {"city": "Oslo"}})
        if wanted:  # a structured answer: Ollama keeps the reply to the schema ("json": any object)
            return json.dumps({"city": "Oslo", "temperature_c": 12})
        if body.get("tools") and not results and (calls := self.plan(body)):
            return ToolCalls(calls)
        return f"Answer from: {'; '.join(results)}" if results else "No tools needed."

    def offered(self, index: int = -1) -> list[str]:
        return [t["function"]["name"] for t in self.requests[index].get("tools") or []]


@pytest.fixture(scope="module")
def model():
    return Model()


@pytest.fixture(scope="module")
async def app(model, databases, chroma_url, tmp_path_factory):
    with FakeOllama() as fake:
        fake.respond = model
        settings = ollama_settings(tmp_path_factory.mktemp("openai-tools"), databases.create(), chroma_url, fake.url)
        async with serve_app(settings) as served:
            yield served


@pytest.fixture
async def client(app, model) -> openai.AsyncOpenAI:
    model.plan = lambda body: [("get_weather", {"city": "Oslo"})]
    _, secret = await app.runtime.keys.create(f"fc-{uuid.uuid4().hex[:6]}", actor=Actor.host())
    return openai_client(app, secret)


def result_for(call, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call.id, "content": content}


async def test_a_tool_call_round_trip_not_streamed(client, model):
    first = await client.chat.completions.create(model="agent", messages=[ASK], tools=[WEATHER])
    (choice,) = first.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Oslo"} and call.id
    assert model.offered() == ["get_weather"]

    history = [ASK, choice.message.model_dump(exclude_none=True), result_for(call, "Sunny, 12 °C")]
    second = await client.chat.completions.create(model="agent", messages=history, tools=[WEATHER])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "Answer from: Sunny, 12 °C"
    sent = model.requests[-1]["messages"]
    assert [m["role"] for m in sent[-3:]] == ["user", "assistant", "tool"]
    assert sent[-2]["tool_calls"][0]["function"]["name"] == "get_weather"


async def test_a_streamed_tool_call_accumulates_in_the_client(client):
    async with client.chat.completions.stream(model="agent", messages=[ASK], tools=[WEATHER]) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    (choice,) = final.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Oslo"}

    raw = await client.chat.completions.create(model="agent", messages=[ASK], tools=[WEATHER], stream=True)
    deltas = [c.choices[0].delta for c in [c async for c in raw] if c.choices]
    fragments = [t for d in deltas for t in d.tool_calls or []]
    assert fragments[0].id and fragments[0].type == "function" and fragments[0].function.name == "get_weather"
    assert all(f.index == 0 and f.function is not None for f in fragments)
    assert json.loads("".join(f.function.arguments or "" for f in fragments)) == {"city": "Oslo"}


async def test_tool_choice_none_auto_required_and_named(client, model):
    none = await client.chat.completions.create(model="agent", messages=[ASK], tools=[WEATHER], tool_choice="none")
    assert none.choices[0].finish_reason == "stop" and model.offered() == []

    auto = await client.chat.completions.create(model="agent", messages=[ASK], tools=[WEATHER], tool_choice="auto")
    assert auto.choices[0].message.tool_calls[0].function.name == "get_weather"

    model.plan = lambda body: None  # a model that would rather answer
    required = await client.chat.completions.create(
        model="agent", messages=[ASK], tools=[WEATHER, TIME_IN], tool_choice="required"
    )
    assert required.choices[0].finish_reason == "tool_calls"  # the provider made it call
    assert isinstance(model.requests[-1]["format"], dict)

    named = await client.chat.completions.create(
        model="agent", messages=[ASK], tools=[WEATHER, TIME_IN],
        tool_choice={"type": "function", "function": {"name": "local_time"}},
    )  # fmt: skip
    assert [c.function.name for c in named.choices[0].message.tool_calls] == ["local_time"]
    assert model.offered(-2) == ["local_time"]  # only the named tool was offered


async def test_two_parallel_calls_are_handed_back_and_answered_together(client, model):
    model.plan = lambda body: [("get_weather", {"city": "Oslo"}), ("local_time", {"city": "Oslo"})]
    first = await client.chat.completions.create(model="agent", messages=[ASK], tools=[WEATHER, TIME_IN])
    calls = first.choices[0].message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "local_time"] and calls[0].id != calls[1].id
    history = [ASK, first.choices[0].message.model_dump(exclude_none=True),
               result_for(calls[0], "Rain"), result_for(calls[1], "14:05")]  # fmt: skip
    second = await client.chat.completions.create(model="agent", messages=history, tools=[WEATHER, TIME_IN])
    assert second.choices[0].message.content == "Answer from: Rain; 14:05"

    single = await client.chat.completions.create(
        model="agent", messages=[ASK], tools=[WEATHER, TIME_IN], parallel_tool_calls=False
    )
    assert len(single.choices[0].message.tool_calls) == 1


async def test_a_named_conversation_keeps_calls_and_results_in_order_without_doubling(app, client):
    conversation = {"X-Conversation-Id": f"weather-{uuid.uuid4().hex[:6]}"}
    first = await client.chat.completions.create(
        model="agent", messages=[ASK], tools=[WEATHER], extra_headers=conversation
    )
    (call,) = first.choices[0].message.tool_calls
    # Only the new message: the tool's result.
    second = await client.chat.completions.create(
        model="agent", messages=[result_for(call, "Fog")], tools=[WEATHER], extra_headers=conversation
    )
    assert second.choices[0].message.content == "Answer from: Fog"
    # The whole history again, with the next question: nothing doubled.
    system = {"role": "system", "content": "Be brief."}  # editors send one with every request
    history = [system, ASK, first.choices[0].message.model_dump(exclude_none=True), result_for(call, "Fog"),
               {"role": "assistant", "content": second.choices[0].message.content},
               {"role": "user", "content": "Thanks!"}]  # fmt: skip
    await client.chat.completions.create(model="agent", messages=history, extra_headers=conversation)
    tid = second.model_extra["conversation_id"]
    snapshot = await app.runtime.graph.aget_state({"configurable": {"thread_id": tid}})
    kinds = [m.type for m in snapshot.values["messages"]]
    assert kinds == ["human", "ai", "tool", "ai", "human", "ai"]


async def test_bad_tools_and_results_are_400s_naming_the_field_and_nothing_is_stored(app, client):
    rest = app.as_key(client.api_key)
    before = len((await rest.post("/threads/search", json={"limit": 1000})).json())
    broken = {"type": "function", "function": {"name": "x", "parameters": {"type": 5}}}
    cases = [
        ({"tools": [broken]}, [ASK], "tools[0].function.parameters"),
        ({"tools": [{"type": "function", "function": {"name": "no spaces"}}]}, [ASK], "tools"),
        ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}}, [ASK], "tool_choice"),
        ({"tool_choice": "required"}, [ASK], "tool_choice"),
        ({"tools": [WEATHER]}, [ASK, {"role": "tool", "tool_call_id": "call_unknown", "content": "x"}],
         "messages[1].tool_call_id"),
    ]  # fmt: skip
    for extra, messages, param in cases:
        with pytest.raises(openai.BadRequestError) as refused:
            await client.chat.completions.create(
                model="agent", messages=messages, extra_headers={"X-Conversation-Id": "bad-input"}, **extra
            )
        assert refused.value.status_code == 400
        assert (refused.value.body.get("param") or "").startswith(param), (param, refused.value.body)
    assert len((await rest.post("/threads/search", json={"limit": 1000})).json()) == before


async def test_the_assistants_own_tools_run_and_the_clients_are_handed_back_in_one_request(app, client, model):
    rest = app.as_key(client.api_key)
    body = {"graph_id": "agent", "name": "calc", "context": {"tools": ["calculator"]}}
    assert (await rest.post("/assistants", json=body)).status_code == 200
    model.plan = lambda body: [("calculator", {"expression": "6 * 7"}), ("get_weather", {"city": "Oslo"})]
    # A named conversation: its thread keeps the calls the appliance made, which the client never sees.
    named = {"X-Conversation-Id": f"mixed-{uuid.uuid4().hex[:6]}"}
    first = await client.chat.completions.create(model="calc", messages=[ASK], tools=[WEATHER], extra_headers=named)
    assert model.offered(-1) == ["calculator", "get_weather"]
    (call,) = first.choices[0].message.tool_calls  # the calculator's call was the appliance's to make
    assert call.function.name == "get_weather" and first.choices[0].finish_reason == "tool_calls"
    history = [ASK, first.choices[0].message.model_dump(exclude_none=True), result_for(call, "Snow")]
    second = await client.chat.completions.create(model="calc", messages=history, tools=[WEATHER], extra_headers=named)
    assert second.choices[0].message.content == "Answer from: 42; Snow"


async def test_langchains_chat_openai_binds_tools_against_the_appliance(app, client):
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="agent", base_url=f"{app.url}/v1", api_key=client.api_key, max_retries=0)
    bound = chat.bind_tools([WEATHER])
    question = HumanMessage("What is the weather in Oslo?")
    reply = await bound.ainvoke([question])
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("get_weather", {"city": "Oslo"})]
    answer = await bound.ainvoke([question, reply, ToolMessage("Hail", tool_call_id=reply.tool_calls[0]["id"])])
    assert answer.content == "Answer from: Hail"


# Structured outputs ------------------------------------------------------------


class Weather(BaseModel):
    city: str
    temperature_c: int


async def test_parse_with_a_pydantic_model_gets_an_answer_the_provider_kept_to_its_schema(client, model):
    parsed = await client.chat.completions.parse(model="agent", messages=[ASK], response_format=Weather)
    assert parsed.choices[0].message.parsed == Weather(city="Oslo", temperature_c=12)
    sent = model.requests[-1]["format"]  # Ollama was given the schema itself, and decodes to it
    assert sent["properties"]["temperature_c"]["type"] == "integer" and sent["required"] == ["city", "temperature_c"]

    plain = await client.chat.completions.create(model="agent", messages=[ASK], response_format={"type": "json_object"})
    assert json.loads(plain.choices[0].message.content) == {"city": "Oslo", "temperature_c": 12}
    assert model.requests[-1]["format"] == "json"


async def test_an_answer_after_tool_calls_is_kept_to_the_response_format_too(app, client, model):
    rest = app.as_key(client.api_key)
    body = {"graph_id": "agent", "name": "calc", "context": {"tools": ["calculator"]}}
    assert (await rest.post("/assistants", json=body)).status_code == 200
    model.plan = lambda body: [("calculator", {"expression": "6 * 7"})]
    parsed = await client.chat.completions.parse(model="calc", messages=[ASK], response_format=Weather)
    assert parsed.choices[0].message.parsed == Weather(city="Oslo", temperature_c=12)
    assert any(m["role"] == "tool" for m in model.requests[-1]["messages"])  # written after the call's result
    # Streamed, only the answer kept to the schema arrives, not the free one before it.
    stream = await client.chat.completions.create(
        model="calc", messages=[ASK], response_format={"type": "json_object"}, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert json.loads(text) == {"city": "Oslo", "temperature_c": 12}


async def test_langchains_with_structured_output_gets_the_model(app, client):
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(model="agent", base_url=f"{app.url}/v1", api_key=client.api_key, max_retries=0)
    assert await chat.with_structured_output(Weather).ainvoke("The weather in Oslo?") == Weather(
        city="Oslo", temperature_c=12
    )


async def test_a_schema_that_is_not_one_is_a_400_naming_it(client):
    bad = {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object", "required": "city"}}}
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(model="agent", messages=[ASK], response_format=bad)
    assert refused.value.body["param"] == "response_format.json_schema.schema"
