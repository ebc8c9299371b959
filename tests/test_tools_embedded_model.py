"""Tool calls on the embedded model (SmolLM2-135M under llama.cpp), which has
no native tool calling: a grammar makes every reply either one valid call of
a bound tool, arguments fitting its schema, or a plain answer. Whether the
135M model calls the right tool with the right arguments is not asserted: it
cannot be relied on to (the README says so); that its output is always
usable is."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

from appliance.llm.provider import build_language_model
from appliance.tools.toolbox import BUILT_IN_SPECS
from tests.support.app import make_settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

QUESTIONS = [
    "What is 1234 times 5678? Use the calculator.",
    "What time is it now?",
    "Compute (19.5 + 4) / 3 with the calculator tool.",
    "Hello! How are you today?",
    "What is the date today? Call current_time.",
    "Find what our handbook says about the VPN.",
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("embedded-tools"), "postgresql://unused/none")
    return build_language_model(settings)


async def test_every_reply_is_a_valid_call_of_a_bound_tool_or_a_plain_answer(model):
    specs = list(BUILT_IN_SPECS.values())
    bound = model.answer.bind_tools([s.as_openai() for s in specs])
    schemas = {s.name: s.input_schema for s in specs}
    calls = 0
    for question in QUESTIONS:
        reply = await bound.ainvoke([SystemMessage("You are a helpful assistant."), HumanMessage(question)])
        if reply.tool_calls:
            (call,) = reply.tool_calls
            assert call["name"] in schemas and reply.text == ""
            jsonschema.validate(call["args"], schemas[call["name"]])
            calls += 1
        else:
            assert reply.text.strip() and not reply.text.lstrip().startswith("{"), reply.text
    print(f"SmolLM2-135M called a tool for {calls} of {len(QUESTIONS)} questions")


def shown_calls() -> list:
    """A conversation in which the calculator was called three times: what a
    135M model needs to see before it calls a tool itself."""
    history = [SystemMessage("You are a helpful assistant.")]
    for i, (question, expression, result) in enumerate(
        [("What is 2 + 2?", "2 + 2", "4"), ("What is 10 * 7?", "10 * 7", "70"), ("What is 9 - 5?", "9 - 5", "4")]
    ):
        call = {"name": "calculator", "args": {"expression": expression}, "id": f"c{i}"}
        history += [HumanMessage(question), AIMessage("", tool_calls=[call]), ToolMessage(result, tool_call_id=f"c{i}")]
    return history


async def test_shown_how_the_model_calls_and_the_call_streams_whole_never_as_answer_text(model):
    greedy = model.answering(0.0, 64).bind_tools([BUILT_IN_SPECS["calculator"].as_openai()])
    prompt = [*shown_calls(), HumanMessage("What is 1234 times 5678?")]
    reply = await greedy.ainvoke(prompt)
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("calculator", {"expression": "1234 * 5678"})]
    chunks = [c async for c in greedy.astream(prompt)]
    assert all(not c.content for c in chunks)  # the call's JSON is never streamed as answer text
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert [c["name"] for c in merged.tool_calls] == ["calculator"]
    assert merged.tool_calls[0]["args"] == {"expression": "1234 * 5678"}


async def test_streamed_plain_answers_stream_token_by_token(model):
    bound = model.answering(0.0, 64).bind_tools([BUILT_IN_SPECS["calculator"].as_openai()])
    chunks = [c async for c in bound.astream([HumanMessage("Hello! How are you today?")])]
    texts = [c.content for c in chunks if c.content]
    assert len(texts) > 3 and not "".join(texts).lstrip().startswith("{")


WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer"}},
    "required": ["city", "temperature_c"],
    "additionalProperties": False,
}


async def test_a_structured_answer_always_fits_its_schema(model):
    for question in ("The weather in Oslo, as JSON?", "Hello!", "Tell me a story about a dragon."):
        reply = await model.structured(WEATHER_SCHEMA).ainvoke([HumanMessage(question)])
        jsonschema.validate(json.loads(reply.text), WEATHER_SCHEMA)
        anything = await model.structured(None).ainvoke([HumanMessage(question)])
        assert isinstance(json.loads(anything.text), dict)


@pytest.fixture(scope="module")
async def embedded_app(databases, chroma_url, tmp_path_factory):
    from tests.support.app import serve_app

    settings = make_settings(tmp_path_factory.mktemp("embedded-json"), databases.create(), chroma_url)
    async with serve_app(settings) as served:  # the configured SmolLM2
        yield served


async def test_through_the_openai_api_and_a_schema_the_grammar_cannot_express_is_a_400(embedded_app):
    from tests.support.turns import openai_client

    client = openai_client(embedded_app, embedded_app.admin_key)
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER_SCHEMA, "strict": True}}
    answer = await client.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "Weather in Oslo?"}], response_format=fmt
    )
    jsonschema.validate(json.loads(answer.choices[0].message.content), WEATHER_SCHEMA)
    fmt["json_schema"]["schema"] = {"not": {"type": "string"}}
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": "Hi"}], response_format=fmt
        )
    assert refused.value.body["param"] == "response_format.json_schema.schema"
    assert "cannot be enforced" in refused.value.body["message"]
