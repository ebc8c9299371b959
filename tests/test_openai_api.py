"""The OpenAI-compatible API, driven by OpenAI's own Python client, against
the real agent, PostgreSQL, Chroma and MiniLM embeddings (the model scripted)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import openai
import pytest

from appliance.store.audit import Actor
from tests.support.app import model_delay
from tests.support.corpus import write_corpus
from tests.support.librarian import RECALL, answer_to
from tests.support.turns import new_kb, new_thread, openai_client, turn, upload

PALLETS = "How many pallets does the Rotterdam warehouse hold?"
SYSTEM = {"role": "system", "content": "You are a helpful assistant."}  # editors send one; it joins the instructions


@pytest.fixture(scope="module")
def app(librarian_app):
    return librarian_app


async def client_for(app, tenant: str) -> openai.AsyncOpenAI:
    _, secret = await app.runtime.keys.create(tenant, actor=Actor.host())
    return openai_client(app, secret)


@pytest.fixture(scope="module")
async def chat(app) -> openai.AsyncOpenAI:
    """A tenant with no knowledge bases: plain conversation."""
    return await client_for(app, f"chat-{uuid.uuid4().hex[:6]}")


@pytest.fixture(scope="module")
async def library(app, tmp_path_factory):
    """A tenant with the corpus in a knowledge base: (openai client, its REST client)."""
    tenant = f"library-{uuid.uuid4().hex[:6]}"
    _, secret = await app.runtime.keys.create(tenant, actor=Actor.host())
    rest = app.as_key(secret)
    kb_id = await new_kb(rest, "company")
    for name, path in write_corpus(tmp_path_factory.mktemp("corpus")).items():
        assert (await upload(rest, kb_id, name, path.read_bytes())).status_code == 201
    return openai_client(app, secret), rest


async def thread_messages(app, thread_id: str) -> list[tuple[str, str]]:
    snapshot = await app.runtime.graph.aget_state({"configurable": {"thread_id": thread_id}})
    return [(m.type, m.text) for m in snapshot.values.get("messages", [])]


async def tenant_of(app, tenant_client: openai.AsyncOpenAI) -> str:
    return (await app.runtime.keys.authenticate(tenant_client.api_key)).tenant


async def tenant_thread_count(app, tenant_client: openai.AsyncOpenAI) -> int:
    rest = app.as_key(tenant_client.api_key)
    response = await rest.post("/threads/search", json={"limit": 1000})
    return len(response.json())


async def test_models_lists_the_agent(chat):
    models = await chat.models.list()
    assert [m.id for m in models.data] == ["agent", "all-minilm-l6-v2"]
    assert (await chat.models.retrieve("agent")).id == "agent"


async def test_plain_completion_answers_and_leaves_no_thread(app, chat):
    before = await tenant_thread_count(app, chat)
    completion = await chat.chat.completions.create(
        model="agent", messages=[SYSTEM, {"role": "user", "content": "Hello there"}], temperature=0.2
    )
    [choice] = completion.choices
    assert choice.message.role == "assistant"
    assert choice.message.content.startswith("Hello! (reply ")
    assert choice.finish_reason == "stop"
    assert completion.id.startswith("chatcmpl-") and completion.model == "agent"
    assert completion.usage.completion_tokens == len(choice.message.content.split())
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens > 2
    # Without a conversation the messages were the whole conversation; nothing is kept.
    assert await tenant_thread_count(app, chat) == before


async def test_streamed_completion_arrives_token_by_token(chat):
    stream = await chat.chat.completions.create(
        model="agent",
        messages=[{"role": "user", "content": "Hello again"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    text = "".join(deltas)
    assert len(deltas) == len(text.split(" ")) >= 3  # one per word of the scripted answer
    assert text.startswith("Hello! (reply ") and text.endswith(")")
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage.completion_tokens == len(text.split())
    assert len({c.id for c in chunks}) == 1


async def test_a_client_leaving_a_stream_mid_answer_leaves_no_half_turn(app, chat):
    """The client closes a streamed completion after its first words: the turn
    is undone (the conversation keeps nothing of it) and the next one goes on."""
    conversation = {"X-Conversation-Id": f"leaver-{uuid.uuid4().hex[:6]}"}
    first = await chat.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "My name is Ada"}], extra_headers=conversation
    )
    thread_id = first.model_extra["conversation_id"]
    with model_delay(app, 0.1):
        stream = await chat.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": "Tell me a long story"}], stream=True,
            extra_headers=conversation,
        )  # fmt: skip
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                break
        else:
            raise AssertionError("the stream ended before its first words")
        await stream.close()
        rest = app.as_key(chat.api_key)
        for _ in range(200):  # the turn is undone once its run is gone
            listed = await rest.get(f"/threads/{thread_id}/runs")
            assert listed.status_code == 200, listed.text
            if len(listed.json()) == 1:
                break
            await asyncio.sleep(0.02)
    assert [t for t, _ in await thread_messages(app, thread_id)] == ["human", "ai"]
    second = await chat.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": RECALL}], extra_headers=conversation
    )
    assert second.choices[0].message.content == "Your first message was: My name is Ada"


async def test_conversation_remembers_the_first_turn_when_only_the_new_message_is_sent(app, chat):
    conversation = {"X-Conversation-Id": f"standup-{uuid.uuid4().hex[:6]}"}
    first = await chat.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "My name is Ada"}], extra_headers=conversation
    )
    second = await chat.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": RECALL}], extra_headers=conversation
    )
    assert second.choices[0].message.content == "Your first message was: My name is Ada"
    thread_id = second.model_extra["conversation_id"]
    assert first.model_extra["conversation_id"] == thread_id
    assert [t for t, _ in await thread_messages(app, thread_id)] == ["human", "ai", "human", "ai"]


async def test_streamed_turns_share_a_conversation_named_by_open_webuis_chat_header(app, chat):
    conversation = {"X-OpenWebUI-Chat-Id": f"owui-{uuid.uuid4().hex[:6]}"}
    for text in ("My name is Ada", RECALL):
        stream = await chat.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": text}], stream=True, extra_headers=conversation
        )
        answer = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert answer == "Your first message was: My name is Ada"


async def test_the_user_field_names_the_person_not_a_conversation(app, chat):
    # LibreChat sends its user's id with every chat, each chat with its whole history.
    before = await tenant_thread_count(app, chat)
    person = f"user-{uuid.uuid4().hex[:6]}"
    first = [{"role": "user", "content": "My name is Ada"}]
    reply = await chat.chat.completions.create(model="agent", messages=first, user=person)
    other = await chat.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "My name is Grace"}], user=person
    )
    assert other.choices[0].message.content.startswith("Hello! (reply ")
    follow_up = [*first, {"role": "assistant", "content": reply.choices[0].message.content},
                 {"role": "user", "content": RECALL}]  # fmt: skip
    again = await chat.chat.completions.create(model="agent", messages=follow_up, user=person)
    assert again.choices[0].message.content == "Your first message was: My name is Ada"  # not Grace's, no 409
    assert await tenant_thread_count(app, chat) == before
    # Named, the conversation's runs record who asked.
    named = await chat.chat.completions.create(
        model="agent", messages=first, user=person, extra_headers={"X-Conversation-Id": f"who-{person}"}
    )
    runs = (await app.as_key(chat.api_key).get(f"/threads/{named.model_extra['conversation_id']}/runs")).json()
    assert [r["metadata"]["user"] for r in runs] == [person]


async def test_a_client_that_resends_the_whole_history_adds_only_the_new_message(app, chat):
    conversation = {"X-Conversation-Id": f"history-{uuid.uuid4().hex[:6]}"}
    history = [SYSTEM, {"role": "user", "content": "My name is Ada"}]
    first = await chat.chat.completions.create(model="agent", messages=history, extra_headers=conversation)
    history += [{"role": "assistant", "content": first.choices[0].message.content}, {"role": "user", "content": RECALL}]
    second = await chat.chat.completions.create(model="agent", messages=history, extra_headers=conversation)
    assert second.choices[0].message.content == "Your first message was: My name is Ada"
    thread_id = second.model_extra["conversation_id"]
    messages = await thread_messages(app, thread_id)
    assert [text for _, text in messages][:3] == ["My name is Ada", first.choices[0].message.content, RECALL]
    assert len(messages) == 4  # not 6: the resent turns were not added again


async def test_an_edited_history_continues_from_where_it_left_the_conversation(app, chat):
    conversation = {"X-Conversation-Id": f"edit-{uuid.uuid4().hex[:6]}"}
    one = await chat.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "First question"}], extra_headers=conversation
    )
    answer_one = {"role": "assistant", "content": one.choices[0].message.content}
    await chat.chat.completions.create(
        model="agent",
        messages=[{"role": "user", "content": "First question"}, answer_one, {"role": "user", "content": "Typo"}],
        extra_headers=conversation,
    )
    # The user edits the second question; the client resends the history with the edit.
    edited = await chat.chat.completions.create(
        model="agent",
        messages=[{"role": "user", "content": "First question"}, answer_one, {"role": "user", "content": "Fixed"}],
        extra_headers=conversation,
    )
    messages = await thread_messages(app, edited.model_extra["conversation_id"])
    assert [text for _, text in messages[:3]] == ["First question", answer_one["content"], "Fixed"]
    assert len(messages) == 4


async def test_a_history_the_conversation_never_had_is_refused_with_advice(chat):
    conversation = {"X-Conversation-Id": f"diverged-{uuid.uuid4().hex[:6]}"}
    await chat.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "Hi"}], extra_headers=conversation
    )
    invented = [
        {"role": "user", "content": "Something else"},
        {"role": "assistant", "content": "An answer never given"},
        {"role": "user", "content": "Next"},
    ]
    with pytest.raises(openai.ConflictError) as caught:
        await chat.chat.completions.create(model="agent", messages=invented, extra_headers=conversation)
    assert "send only the new message" in caught.value.body["message"]


async def test_history_sent_without_a_conversation_is_the_memory(chat):
    completion = await chat.chat.completions.create(
        model="agent",
        messages=[
            {"role": "user", "content": "My name is Grace"},
            {"role": "assistant", "content": "Nice to meet you, Grace."},
            {"role": "user", "content": RECALL},
        ],
    )
    assert completion.choices[0].message.content == "Your first message was: My name is Grace"


async def test_a_web_chat_thread_is_continued_by_its_id(app, library):
    client, rest = library
    thread_id = await new_thread(rest, title="from the web chat")
    await turn(rest, thread_id, "Hello, my name is Lin")
    completion = await client.chat.completions.create(
        model="agent",
        messages=[{"role": "user", "content": "Hello again"}],
        extra_headers={"X-Conversation-Id": thread_id},
    )
    assert completion.model_extra["conversation_id"] == thread_id
    assert len(await thread_messages(app, thread_id)) == 4


async def test_answers_from_the_tenants_documents_carry_citations(library):
    client, _ = library
    completion = await client.chat.completions.create(model="agent", messages=[{"role": "user", "content": PALLETS}])
    [citation] = completion.model_extra["citations"]
    assert completion.choices[0].message.content == answer_to(PALLETS, citation["text"])
    assert (citation["index"], citation["source"], citation["page"]) == (1, "report.pdf", 2)
    assert "48000 pallets" in citation["text"]


async def test_a_bad_key_gets_openais_error_shape(app):
    with pytest.raises(openai.AuthenticationError) as caught:
        await openai_client(app, "not-a-key").chat.completions.create(
            model="agent", messages=[{"role": "user", "content": "Hi"}]
        )
    assert caught.value.status_code == 401
    assert caught.value.body == {
        "message": "the API key is not valid (unknown or revoked)",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }


async def test_a_bad_model_gets_model_not_found(chat):
    with pytest.raises(openai.NotFoundError) as caught:
        await chat.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Hi"}])
    body = caught.value.body
    assert (body["type"], body["code"], body["param"]) == ("invalid_request_error", "model_not_found", "model")
    assert "GET /v1/models" in body["message"]
    with pytest.raises(openai.NotFoundError):
        await chat.models.retrieve("gpt-4o")


@pytest.mark.parametrize(
    ("messages", "extra", "param", "says"),
    [
        ([{"role": "tool", "content": "42", "tool_call_id": "x"}], {}, "messages[0].tool_call_id", "answers no call"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}],
            {},
            "messages",
            "only text parts",
        ),
        (
            [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}],
            {},
            "messages",
            "last message",
        ),
        ([{"role": "assistant", "content": ""}], {}, "messages", "last message"),
        ([{"role": "user", "content": "Hi"}], {"n": 2}, "n", "n must be 1"),
        (
            [{"role": "user", "content": "Hi"}],
            {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]},
            "tools[0].function.parameters",
            "must describe an object",
        ),
    ],
)
async def test_bad_requests_get_400_in_openais_shape_and_write_nothing(app, chat, messages, extra, param, says):
    before = await tenant_thread_count(app, chat)
    with pytest.raises(openai.BadRequestError) as caught:
        await chat.chat.completions.create(model="agent", messages=messages, **extra)
    body = caught.value.body
    assert (caught.value.status_code, body["type"], body["param"]) == (400, "invalid_request_error", param)
    assert says in body["message"]
    assert await tenant_thread_count(app, chat) == before


async def test_a_malformed_body_gets_a_400_in_openais_shape(app, chat):
    async with httpx.AsyncClient(base_url=app.url, trust_env=False) as raw:
        response = await raw.post(
            "/v1/chat/completions", headers={"Authorization": f"Bearer {chat.api_key}"}, json={"messages": "hi"}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "messages: Expected `array`, got `str`" in error["message"]


async def test_knowledge_bases_in_the_body_choose_what_is_searched(library):
    client, _ = library
    without = await client.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": PALLETS}], extra_body={"knowledge_bases": []}
    )
    assert without.choices[0].message.content.startswith("Hello! (reply ")  # answered without searching
    assert without.model_extra["citations"] == []
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": PALLETS}], extra_body={"knowledge_bases": ["x"]}
        )
    assert "names a knowledge base that does not exist: 'x'" in caught.value.body["message"]


async def test_a_failure_after_the_stream_began_arrives_as_an_error_event(app, chat):
    def broken(messages, calls):
        raise RuntimeError("the model fell over")

    healthy, app.chat.reply = app.chat.reply, broken
    try:
        stream = await chat.chat.completions.create(
            model="agent", messages=[{"role": "user", "content": "Hello"}], stream=True
        )
        with pytest.raises(openai.APIError) as caught:
            async for _ in stream:
                pass
    finally:
        app.chat.reply = healthy
    assert caught.value.body["type"] == "server_error"
    assert "see the appliance's log" in caught.value.body["message"]


async def test_an_assistant_message_without_text_is_passed_over(chat):
    # Some clients keep an empty assistant turn where an answer failed; it says nothing.
    completion = await chat.chat.completions.create(
        model="agent",
        messages=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": ""},
            {"role": "user", "content": "Hello there"},
        ],  # fmt: skip
    )
    assert completion.choices[0].message.content.startswith("Hello! (reply ")


async def test_system_messages_join_the_instructions_for_their_turn_only(app, chat):
    conversation = {"X-Conversation-Id": f"system-{uuid.uuid4().hex[:6]}"}
    defaults = app.runtime.settings.system_prompt
    asked = [SYSTEM, {"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Hello"}]
    await chat.chat.completions.create(model="agent", messages=asked, extra_headers=conversation)
    prompt = app.chat.answer_prompts()[-1]
    assert prompt[0].type == "system"
    assert prompt[0].text == f"{defaults}\n\nYou are a helpful assistant.\n\nAnswer in French."
    # The next turn, without them, has the assistant's instructions alone; the thread holds no system message.
    await chat.chat.completions.create(
        model="agent", messages=[{"role": "user", "content": "Thanks"}], extra_headers=conversation
    )
    assert app.chat.answer_prompts()[-1][0].text == defaults
    thread = await app.runtime.openai.conversation_thread(await tenant_of(app, chat), conversation["X-Conversation-Id"])
    assert [kind for kind, _ in await thread_messages(app, str(thread[0]))] == ["human", "ai", "human", "ai"]


async def test_an_assistant_can_refuse_system_messages_and_too_long_ones_are_refused(app, chat):
    rest = app.as_key(chat.api_key)
    strict = {"graph_id": "agent", "name": f"strict-{uuid.uuid4().hex[:6]}", "context": {"system_messages": "refuse"}}
    created = await rest.post("/assistants", json=strict)
    assert created.status_code == 200, created.text
    before = await tenant_thread_count(app, chat)
    conversation = {"X-Conversation-Id": f"refused-{uuid.uuid4().hex[:6]}"}
    with pytest.raises(openai.BadRequestError) as refused:
        await chat.chat.completions.create(
            model=strict["name"], messages=[SYSTEM, {"role": "user", "content": "Hi"}], extra_headers=conversation
        )
    assert refused.value.body["param"] == "messages" and "takes no system" in refused.value.body["message"]
    # Without one, the same assistant answers.
    answered = await chat.chat.completions.create(model=strict["name"], messages=[{"role": "user", "content": "Hi"}])
    assert answered.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as too_long:
        await chat.chat.completions.create(
            model="agent", messages=[{"role": "system", "content": "x" * 9000}, {"role": "user", "content": "Hi"}]
        )
    assert too_long.value.body["param"] == "messages" and "over 8000" in too_long.value.body["message"]
    assert await tenant_thread_count(app, chat) == before  # nothing stored


def transcript(question: str, answer: str) -> str:
    """A title task as Open WebUI words one: its instructions, then the chat."""
    return (
        "### Task:\nGenerate a concise, 3-5 word title summarizing the chat history.\n"
        f"### Chat History:\n<chat_history>\nUSER: {question}\nASSISTANT: {answer}\n</chat_history>"
    )


async def test_a_clients_background_tasks_search_nothing_and_add_no_turns(app, library):
    client, rest = library
    conversation = {"X-OpenWebUI-Chat-Id": f"tasks-{uuid.uuid4().hex[:6]}"}
    history = [{"role": "user", "content": PALLETS}]
    first = await client.chat.completions.create(model="agent", messages=history, extra_headers=conversation)
    answer = first.choices[0].message.content
    assert first.model_extra["citations"]  # a question: searched and cited
    thread_id = first.model_extra["conversation_id"]
    tasks = [
        [{"role": "user", "content": transcript(PALLETS, answer)}],  # a transcript, as Open WebUI sends it
        # The last exchange quoted, with a system prompt, in no format of anyone's:
        [SYSTEM, {"role": "user", "content": f"Suggest three tags for «{PALLETS}» answered by «{answer[:120]}»"}],
    ]
    for task in tasks:
        done = await client.chat.completions.create(model="agent", messages=task, extra_headers=conversation)
        assert done.choices[0].message.content.startswith("Hello! (reply ")  # the model alone, no search
        assert done.model_extra["citations"] == [] and done.model_extra.get("conversation_id") is None
        assert len(await thread_messages(app, thread_id)) == 2
    # The conversation goes on from its own last turn.
    history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "Thanks!"}]
    await client.chat.completions.create(model="agent", messages=history, extra_headers=conversation)
    messages = await thread_messages(app, thread_id)
    assert [(kind, text) for kind, text in messages][:3] == [("human", PALLETS), ("ai", answer), ("human", "Thanks!")]
    assert len(messages) == 4


async def test_a_task_sent_as_system_messages_alone_is_answered_by_the_model(app, library):
    client, rest = library
    before = len((await rest.post("/threads/search", json={"limit": 1000})).json())
    task = f"Write a short title for this conversation.\nUser: {PALLETS}\nAI: 48000 pallets."
    done = await client.chat.completions.create(
        model="agent", messages=[{"role": "system", "content": task}], user="person-1"
    )
    assert done.choices[0].message.content.startswith("Hello! (reply ")
    assert done.model_extra["citations"] == []
    prompt = app.chat.answer_prompts()[-1]
    assert (prompt[0].text, prompt[-1].type, prompt[-1].text) == (app.runtime.settings.system_prompt, "human", task)
    assert len((await rest.post("/threads/search", json={"limit": 1000})).json()) == before
