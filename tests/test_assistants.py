"""Assistants: many configured agents on one appliance, versioned, chosen by
every client. Driven with LangGraph's own SDK and OpenAI's client; the model
is scripted, and echoes its system prompt in plain conversation, so what an
assistant's instructions did is asserted exactly."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid

import httpx
import openai
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.errors import ConflictError, NotFoundError

from appliance.services.assistants import ASSISTANT_ID
from appliance.store.audit import Actor
from tests.support.app import model_delay
from tests.support.corpus import FAQ_HTML, HANDBOOK_MD
from tests.support.librarian import Librarian
from tests.support.scripted_model import prompt_kind
from tests.support.turns import new_kb, openai_client, upload

pytestmark = pytest.mark.timeout(120)

ECHO = "My instructions: "
HR_RULES = "You are the HR assistant. Answer about leave and expenses."


class EchoLibrarian(Librarian):
    """The librarian, except that in plain conversation it repeats its system prompt."""

    def __call__(self, messages, calls: int) -> str:
        if prompt_kind(messages) == "answer" and "Sources:" not in messages[-1].text:
            return ECHO + messages[0].text
        return super().__call__(messages, calls)


@pytest.fixture(scope="module")
async def app(databases, chroma_url, tmp_path_factory):
    from tests.support.app import serve_scripted

    async with serve_scripted(
        tmp_path_factory.mktemp("assistants"), databases.create(), chroma_url, reply=EchoLibrarian()
    ) as served:
        yield served


class Tenant:
    def __init__(self, app, secret: str) -> None:
        self.rest = app.as_key(secret)
        self.sdk = get_client(url=app.url, api_key=secret)
        self.openai = openai_client(app, secret)


async def new_tenant(app) -> Tenant:
    _, secret = await app.runtime.keys.create(f"t-{uuid.uuid4().hex[:8]}", actor=Actor.host())
    return Tenant(app, secret)


@pytest.fixture
async def tenant(app) -> Tenant:
    return await new_tenant(app)


@pytest.fixture
async def library(app) -> Tenant:
    """A tenant with two knowledge bases: hr (the handbook) and it (the IT FAQ)."""
    tenant = await new_tenant(app)
    hr, it = await new_kb(tenant.rest, "hr"), await new_kb(tenant.rest, "it")
    assert (await upload(tenant.rest, hr, "handbook.md", HANDBOOK_MD.encode())).status_code == 201
    assert (await upload(tenant.rest, it, "faq.html", FAQ_HTML.encode())).status_code == 201
    tenant.kbs = {"hr": hr, "it": it}  # type: ignore[attr-defined]
    return tenant


def said(text: str) -> dict:
    return {"messages": [{"role": "user", "content": text}]}


def last_answer(values: dict) -> dict:
    return next(m for m in reversed(values["messages"]) if m["type"] == "ai")


async def test_the_sdk_creates_finds_changes_versions_pins_and_deletes_an_assistant(tenant):
    sdk = tenant.sdk
    created = await sdk.assistants.create(
        "agent", name="hr", context={"instructions": HR_RULES}, metadata={"team": "hr"}, description="HR questions"
    )
    assert created["version"] == 1 and created["name"] == "hr" and created["context"] == {"instructions": HR_RULES}
    hr_id = created["assistant_id"]

    assert (await sdk.assistants.get(hr_id))["name"] == "hr"
    assert (await sdk.assistants.get("hr"))["assistant_id"] == hr_id  # by name too
    found = await sdk.assistants.search(metadata={"team": "hr"})
    assert [a["assistant_id"] for a in found] == [hr_id]
    assert [a["name"] for a in await sdk.assistants.search(name="H")] == ["hr"]  # a part of the name, any case
    listed = await sdk.assistants.search(graph_id="agent", limit=10)
    assert [a["assistant_id"] for a in listed] == [ASSISTANT_ID, hr_id]  # the built-in one first
    assert await sdk.assistants.count(graph_id="agent") == 2

    changed = await sdk.assistants.update(hr_id, context={"instructions": "Be brief.", "temperature": 0.0})
    assert changed["version"] == 2 and changed["context"] == {"instructions": "Be brief.", "temperature": 0.0}
    assert changed["metadata"] == {"team": "hr"}  # kept: metadata is merged
    versions = await sdk.assistants.get_versions(hr_id)
    assert [(v["version"], v["context"].get("instructions")) for v in versions] == [(2, "Be brief."), (1, HR_RULES)]

    pinned = await sdk.assistants.set_latest(hr_id, 1)
    assert pinned["version"] == 1 and pinned["context"] == {"instructions": HR_RULES}
    assert (await sdk.assistants.get(hr_id))["version"] == 1
    assert len(await sdk.assistants.get_versions(hr_id)) == 2  # pinning makes no version

    schemas = await sdk.assistants.get_schemas(hr_id)
    assert {"instructions", "knowledge_bases", "documents_only", "model", "temperature"} <= set(
        schemas["context_schema"]["properties"]
    )
    assert {n["id"] for n in (await sdk.assistants.get_graph(hr_id))["nodes"]} >= {"respond", "retrieve"}

    await sdk.assistants.delete(hr_id)
    with pytest.raises(NotFoundError):
        await sdk.assistants.get(hr_id)
    assert await sdk.assistants.count() == 1


async def test_a_run_follows_its_assistants_instructions_and_knowledge_bases(library):
    sdk = library.sdk
    plain = await sdk.assistants.create("agent", name="plain", context={"instructions": "You are Plain.",
                                                                         "knowledge_bases": []})  # fmt: skip
    await sdk.assistants.create("agent", name="hr", context={"instructions": HR_RULES, "knowledge_bases": ["hr"]})

    thread = await sdk.threads.create()
    values = await sdk.runs.wait(thread["thread_id"], plain["assistant_id"], input=said("hello there"))
    assert last_answer(values)["content"] == ECHO + "You are Plain."

    # hr searches the handbook only: the IT FAQ's answer is not there to be found.
    thread = await sdk.threads.create()
    values = await sdk.runs.wait(thread["thread_id"], "hr", input=said("How many days of paid leave per year?"))
    citations = last_answer(values)["response_metadata"]["citations"]
    assert citations and {c["knowledge_base_id"] for c in citations} == {library.kbs["hr"]}
    values = await sdk.runs.wait(thread["thread_id"], "hr", input=said("Which client connects to the VPN?"))
    assert last_answer(values)["response_metadata"]["answer_mode"] == "refused"

    # The built-in agent searches every knowledge base of the tenant.
    thread = await sdk.threads.create()
    values = await sdk.runs.wait(thread["thread_id"], "agent", input=said("Which client connects to the VPN?"))
    assert {c["knowledge_base_id"] for c in last_answer(values)["response_metadata"]["citations"]} == {
        library.kbs["it"]
    }


async def test_a_thread_remembers_its_assistant_and_a_run_on_it_without_one_uses_it(library):
    sdk = library.sdk
    plain = await sdk.assistants.create("agent", name="plain", context={"instructions": "Plain speaking."})
    thread = await sdk.threads.create(metadata={"assistant_id": plain["assistant_id"]})
    values = await sdk.runs.wait(thread["thread_id"], None, input=said("hello"))
    assert last_answer(values)["content"] == ECHO + "Plain speaking."

    # A thread made by its first run remembers that run's assistant.
    new = str(uuid.uuid4())
    await sdk.runs.wait(new, "plain", input=said("hello"), if_not_exists="create")
    assert (await sdk.threads.get(new))["metadata"]["assistant_id"] == plain["assistant_id"]
    values = await sdk.runs.wait(new, None, input=said("hello again"))
    assert last_answer(values)["content"] == ECHO + "Plain speaking."

    # The thread's own choice of knowledge bases overrides its assistant's.
    documents = await sdk.assistants.create("agent", name="docs", context={"knowledge_bases": ["hr"]})
    chosen = await sdk.threads.create(metadata={"assistant_id": documents["assistant_id"],
                                                "knowledge_bases": [library.kbs["it"]]})  # fmt: skip
    values = await sdk.runs.wait(chosen["thread_id"], None, input=said("Which client connects to the VPN?"))
    assert {c["knowledge_base_id"] for c in last_answer(values)["response_metadata"]["citations"]} == {
        library.kbs["it"]
    }


async def test_a_run_records_its_version_and_a_change_applies_to_the_next_run_not_a_running_one(app, tenant):
    sdk = tenant.sdk
    helper = await sdk.assistants.create("agent", name="helper", context={"instructions": "Version one."})
    thread = await sdk.threads.create()
    with model_delay(app, 0.1):
        run = await sdk.runs.create(thread["thread_id"], "helper", input=said("hello"))
        for _ in range(100):
            if (await sdk.runs.get(thread["thread_id"], run["run_id"]))["status"] == "running":
                break
            await asyncio.sleep(0.02)
        await sdk.assistants.update(helper["assistant_id"], context={"instructions": "Version two."})
        await sdk.runs.join(thread["thread_id"], run["run_id"])
    state = await sdk.threads.get_state(thread["thread_id"])
    assert last_answer(state["values"])["content"] == ECHO + "Version one."
    finished = await sdk.runs.get(thread["thread_id"], run["run_id"])
    assert finished["assistant_id"] == helper["assistant_id"]
    assert finished["kwargs"]["assistant_version"] == 1

    values = await sdk.runs.wait(thread["thread_id"], "helper", input=said("hello again"))
    assert last_answer(values)["content"] == ECHO + "Version two."
    runs = await sdk.runs.list(thread["thread_id"])
    assert [r["kwargs"]["assistant_version"] for r in runs] == [2, 1]


async def test_the_openai_client_lists_assistants_as_models_and_answers_as_the_one_named(library):
    await library.sdk.assistants.create("agent", name="hr", context={"instructions": HR_RULES,
                                                                      "knowledge_bases": ["hr"]})  # fmt: skip
    models = [m.id for m in (await library.openai.models.list()).data]
    assert models == ["agent", "hr", "all-minilm-l6-v2"]  # the assistants, then the embedding model
    assert (await library.openai.models.retrieve("hr")).id == "hr"

    completion = await library.openai.chat.completions.create(
        model="hr", messages=[{"role": "user", "content": "How many days of paid leave per year?"}]
    )
    assert "27 days" in completion.choices[0].message.content
    [citation] = completion.model_extra["citations"]
    assert citation["knowledge_base_id"] == library.kbs["hr"]

    refused = await library.openai.chat.completions.create(
        model="hr", messages=[{"role": "user", "content": "Which client connects to the VPN?"}]
    )
    assert refused.model_extra["citations"] == []  # hr does not search the IT FAQ
    with pytest.raises(openai.NotFoundError):
        await library.openai.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])


BAD_CREATES = [
    ({"context": {"colour": "blue"}}, 422, "context.colour"),
    ({"context": {"retrieval_k": 0}}, 422, "context.retrieval_k"),
    ({"context": {"temperature": 9}}, 422, "context.temperature"),
    ({"context": {"instructions": ""}}, 422, "context.instructions"),
    ({"context": {"documents_only": "yes"}}, 422, "context.documents_only"),
    ({"context": {"max_tokens": 0.5}}, 422, "context.max_tokens"),
    # References to what does not exist here are 404, as any (OpenAI's model_not_found too).
    ({"context": {"model": "gpt-4"}}, 404, "context.model"),
    ({"context": {"knowledge_bases": ["nowhere"]}}, 404, "context.knowledge_bases"),
    ({"context": {"knowledge_bases": "hr"}}, 422, "context.knowledge_bases"),
    ({"config": {"configurable": {"max_tokens": -1}}}, 422, "config.configurable.max_tokens"),
    ({"config": {"callbacks": []}}, 400, "callbacks"),
    ({"graph_id": "other"}, 400, "graph_id"),
    ({"name": "agent"}, 422, "name"),
    ({"name": "all-minilm-l6-v2"}, 422, "name"),
    ({"name": str(uuid.uuid4())}, 422, "name"),
]


@pytest.mark.parametrize(("change", "status", "field"), BAD_CREATES)
async def test_bad_assistant_settings_are_a_4xx_naming_the_field_and_store_nothing(library, change, status, field):
    body = {"graph_id": "agent", "name": f"a-{uuid.uuid4().hex[:6]}"} | change
    response = await library.rest.post("/assistants", json=body)
    assert response.status_code == status, response.text
    assert field in response.text
    assert (await library.rest.post("/assistants/count", json={})).json() == 1  # the built-in one only

    # The same change made to an existing assistant: refused, and no version made.
    own = (await library.rest.post("/assistants", json={"graph_id": "agent", "name": "mine"})).json()
    response = await library.rest.patch(f"/assistants/{own['assistant_id']}", json=change)
    assert response.status_code == status and field in response.text
    versions = (await library.rest.post(f"/assistants/{own['assistant_id']}/versions", json={})).json()
    assert [v["version"] for v in versions] == [1]


async def test_a_foreign_knowledge_base_a_duplicate_name_and_the_built_in_agent_are_refused(app, library, tenant):
    foreign = await new_kb(tenant.rest, "theirs")
    response = await library.rest.post(
        "/assistants", json={"graph_id": "agent", "name": "spy", "context": {"knowledge_bases": [foreign]}}
    )
    assert response.status_code == 404 and "context.knowledge_bases" in response.text

    await library.sdk.assistants.create("agent", name="twin")
    with pytest.raises(ConflictError) as caught:
        await library.sdk.assistants.create("agent", name="twin")
    assert "twin" in str(caught.value.body)
    other = await library.sdk.assistants.create("agent", name="other")
    with pytest.raises(ConflictError):
        await library.sdk.assistants.update(other["assistant_id"], name="twin")
    assert (await library.sdk.assistants.get(other["assistant_id"]))["version"] == 1

    for call in (
        library.sdk.assistants.update("agent", context={"instructions": "x"}),
        library.sdk.assistants.delete(ASSISTANT_ID),
        library.sdk.assistants.set_latest("agent", 1),
    ):
        with pytest.raises(ConflictError):
            await call
    with pytest.raises(httpx.HTTPStatusError) as caught:
        await library.sdk.runs.wait(None, "agent", input=said("hi"), context={"retrieval_k": 99})
    assert caught.value.response.status_code == 422 and "context.retrieval_k" in caught.value.response.text

    # if_exists=do_nothing hands back the one that exists, unchanged.
    twin = await library.sdk.assistants.get("twin")
    again = await library.sdk.assistants.create(
        "agent", assistant_id=twin["assistant_id"], name="ignored", if_exists="do_nothing"
    )
    assert again == twin


async def test_another_tenants_assistant_and_its_runs_are_404_on_every_route(library, tenant):
    mine = await library.sdk.assistants.create("agent", name="private", context={"instructions": "Secret."})
    aid = mine["assistant_id"]
    thread = await library.sdk.threads.create()
    run = await library.sdk.runs.create(thread["thread_id"], aid, input=said("hello"))

    calls = [
        ("GET", f"/assistants/{aid}", None),
        ("GET", "/assistants/private", None),
        ("PATCH", f"/assistants/{aid}", {"name": "stolen"}),
        ("DELETE", f"/assistants/{aid}", None),
        ("POST", f"/assistants/{aid}/versions", {}),
        ("POST", f"/assistants/{aid}/latest", {"version": 1}),
        ("GET", f"/assistants/{aid}/schemas", None),
        ("GET", f"/assistants/{aid}/graph", None),
        ("GET", f"/threads/{thread['thread_id']}/runs/{run['run_id']}", None),
        ("POST", "/runs/wait", {"assistant_id": aid, "input": said("hi")}),
    ]
    for method, path, body in calls:
        response = await tenant.rest.request(method, path, json=body)
        assert response.status_code == 404, (method, path, response.text)
    assert [a["name"] for a in await tenant.sdk.assistants.search()] == ["agent"]
    assert "private" not in [m.id for m in (await tenant.openai.models.list()).data]
    assert (await library.sdk.assistants.get(aid))["version"] == 1  # untouched


async def cli(app, tmp_path, *args: str) -> tuple[int, str, str]:
    key_file = tmp_path / "key"
    key_file.write_text(app.admin_key + "\n")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli.main", "assistants", *args,
        "--url", app.url, "--key-file", str(key_file),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "", "APPLIANCE_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_creates_lists_shows_updates_and_deletes_assistants(app, tmp_path):
    kb = await new_kb(app.client, f"manuals-{uuid.uuid4().hex[:6]}")
    name = f"support-{uuid.uuid4().hex[:6]}"
    code, out, err = await cli(
        app, tmp_path, "create", name, "--instructions", "Answer from the manuals.", "-k", kb,
        "--documents-only", "--temperature", "0.1", "--max-tokens", "200", "--json",
    )  # fmt: skip
    assert code == 0, err
    created = json.loads(out)
    assert created["context"] == {"instructions": "Answer from the manuals.", "knowledge_bases": [kb],
                                  "documents_only": True, "temperature": 0.1, "max_tokens": 200}  # fmt: skip
    code, out, err = await cli(app, tmp_path, "list")
    assert code == 0 and name in out and out.splitlines()[0].startswith("agent")
    code, out, err = await cli(app, tmp_path, "update", name, "--no-documents-only", "--description", "Manuals")
    assert code == 0, err
    code, out, err = await cli(app, tmp_path, "show", name, "--versions", "--json")
    versions = json.loads(out)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[0]["context"]["documents_only"] is False and versions[0]["description"] == "Manuals"
    assert versions[0]["context"]["instructions"] == "Answer from the manuals."  # kept: only what was given changed
    code, out, err = await cli(app, tmp_path, "create", f"x-{name}", "--model", "gpt-4")
    assert code == 2 and "context.model" in err
    code, out, err = await cli(app, tmp_path, "delete", name)
    assert code == 0, err
    code, out, err = await cli(app, tmp_path, "show", name)
    assert code == 2 and "not found" in err


async def test_json_integers_written_as_floats_are_taken_and_a_state_update_routes_without_a_run(library):
    created = await library.rest.post(
        "/assistants", json={"graph_id": "agent", "name": "floaty", "context": {"max_tokens": 200.0}}
    )
    assert created.status_code == 200, created.text
    assert created.json()["context"] == {"max_tokens": 200}
    # A state update as a node routes the graph's edges outside any run: the built-in assistant's settings apply.
    thread = await library.sdk.threads.create()
    for values, as_node in (({"messages": [{"role": "user", "content": "x"}]}, None), ({"question": "x"}, "grade")):
        update = await library.sdk.threads.update_state(thread["thread_id"], values, as_node=as_node)
        assert update["checkpoint"]["checkpoint_id"]


async def test_the_graph_invoked_without_a_run_answers_as_the_built_in_assistant_over_no_knowledge(app, library):
    # As a script or a benchmark calls it: no run resolved "every knowledge base" to a tenant's.
    config = {"configurable": {"thread_id": str(uuid.uuid4())}}
    values = await app.runtime.graph.ainvoke({"messages": [("user", "How many vacation days do I get?")]}, config)
    answer = last_answer({"messages": [m.model_dump() for m in values["messages"]]})
    assert not answer["response_metadata"].get("citations")


@pytest.mark.parametrize("node", ["plan", "retrieve", "rewrite", "generate"])
async def test_a_run_goes_on_from_a_state_set_as_any_node_with_only_some_keys(library, node):
    # update_state as a node leaves the thread before the next node, whatever this turn's keys hold.
    sdk = library.sdk
    tid = (await sdk.threads.create())["thread_id"]
    await sdk.threads.update_state(tid, {"draft": "Forty days."}, as_node=node)
    run = await sdk.runs.create(tid, "agent", input=None)
    await sdk.runs.join(tid, run["run_id"])
    assert (await sdk.runs.get(tid, run["run_id"]))["status"] == "success"
