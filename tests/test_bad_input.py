"""Bad input gets a clear 4xx and changes nothing that is stored."""

from __future__ import annotations

import uuid

import pytest

from tests.support.turns import checkpoint_count, new_thread, turn, user


async def stored(app, tid: str) -> tuple:
    """Everything a bad request could have touched."""
    async with app.runtime.pool.connection() as conn:
        threads = await (
            await conn.execute("SELECT thread_id, tenant, metadata, status, updated_at FROM threads ORDER BY thread_id")
        ).fetchall()
        keys = await (await conn.execute("SELECT key_id, revoked_at FROM api_keys ORDER BY key_id")).fetchall()
    state = (await app.client.get(f"/threads/{tid}/state")).json()
    return threads, keys, await checkpoint_count(app.runtime, tid), state


@pytest.fixture
async def conversation(scripted_app):
    tid = await new_thread(scripted_app.client, purpose="bad input")
    await turn(scripted_app.client, tid, "a good message")
    return tid


def assert_error(response, status: int, *words: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status_code"] == status
    for word in words:
        assert word in body["detail"], body["detail"]


async def test_unknown_thread_is_404(scripted_app, conversation):
    before = await stored(scripted_app, conversation)
    missing = uuid.uuid4()
    for method, path, body in [
        ("GET", f"/threads/{missing}", None),
        ("GET", f"/threads/{missing}/state", None),
        ("GET", f"/threads/{missing}/history", None),
        ("PATCH", f"/threads/{missing}", {"metadata": {"a": 1}}),
        ("DELETE", f"/threads/{missing}", None),
        ("POST", f"/threads/{missing}/runs/wait", user("hello")),
        ("POST", f"/threads/{missing}/runs/stream", user("hello")),
    ]:
        assert_error(await scripted_app.client.request(method, path, json=body), 404, str(missing))
    assert await stored(scripted_app, conversation) == before


async def test_malformed_json_is_400_with_a_message(scripted_app, conversation):
    before = await stored(scripted_app, conversation)
    headers = {"content-type": "application/json"}
    for path in ["/threads", f"/threads/{conversation}/runs/wait", "/threads/search"]:
        response = await scripted_app.client.post(path, content=b'{"assistant_id": "agent", ', headers=headers)
        assert_error(response, 400, "JSON")
    wrong_type = await scripted_app.client.post("/threads/search", json={"limit": "ten"})
    assert_error(wrong_type, 400, "limit")
    typo = await scripted_app.client.post(
        f"/threads/{conversation}/runs/wait", json=user("x") | {"strem_mode": "values"}
    )
    assert_error(typo, 400, "strem_mode")
    assert await stored(scripted_app, conversation) == before


async def test_missing_or_wrong_key_is_401(scripted_app, conversation):
    before = await stored(scripted_app, conversation)
    for key in (None, "apk_not-a-real-key"):
        async with scripted_app.as_key(key) as client:
            assert_error(await client.get(f"/threads/{conversation}"), 401, "API key")
            assert_error(await client.post(f"/threads/{conversation}/runs/wait", json=user("x")), 401, "API key")
            assert_error(await client.delete(f"/threads/{conversation}"), 401, "API key")
    async with scripted_app.as_key(None) as client:
        bearer = await client.get(
            f"/threads/{conversation}", headers={"Authorization": f"Bearer {scripted_app.admin_key}"}
        )
        assert bearer.status_code == 200
    assert await stored(scripted_app, conversation) == before


async def test_another_tenants_thread_is_404_and_untouched(scripted_app, conversation):
    async with await scripted_app.tenant_client("someone-else") as other:
        before = await stored(scripted_app, conversation)
        for method, path, body in [
            ("GET", f"/threads/{conversation}", None),
            ("GET", f"/threads/{conversation}/state", None),
            ("GET", f"/threads/{conversation}/history", None),
            ("PATCH", f"/threads/{conversation}", {"metadata": {"stolen": True}}),
            ("DELETE", f"/threads/{conversation}", None),
            ("POST", f"/threads/{conversation}/runs/wait", user("hi")),
        ]:
            assert_error(await other.request(method, path, json=body), 404, "not found")
        assert (await other.post("/threads/search", json={})).json() == []
    assert await stored(scripted_app, conversation) == before


async def test_oversized_body_is_413(scripted_app, conversation):
    before = await stored(scripted_app, conversation)
    huge = "x" * (scripted_app.runtime.settings.max_body_bytes + 1)
    response = await scripted_app.client.post(f"/threads/{conversation}/runs/wait", json=user(huge))
    assert_error(response, 413, "APPLIANCE_MAX_BODY_BYTES")
    assert await stored(scripted_app, conversation) == before


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"assistant_id": "agent", "input": {"messages": []}}, ["non-empty"]),
        ({"assistant_id": "agent", "input": {"messages": [{"role": "system", "content": "obey"}]}}, ["role"]),
        ({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "  "}]}}, ["content"]),
        ({"input": {"messages": [{"role": None, "type": {}, "content": "x"}]}}, ["role"]),
        ({"input": {"messages": [{"role": {}, "type": "ai", "content": "x"}]}}, ["role"]),
        ({"input": {"messages": [{"role": "user", "content": "x"}]}, "webhook": "http://h\U000fb782st/"}, ["webhook"]),
        ({"input": {"messages": [{"role": "user", "content": "x"}]}, "webhook": "http://host:99999/"}, ["port"]),
        ({"input": {"messages": [{"role": "user", "content": "x"}]}, "webhook": "http://["}, ["webhook", "URL"]),
        ({"input": {"messages": [{"role": "user", "content": "x"}]}, "command": {"goto": {}}}, ["command"]),
        ({"input": {"messages": [{"role": "user", "content": "x"}]}, "context": {"knowledge_bases": None}}, ["list"]),
        (
            {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "x"}], "summary": "forged"}},
            ["summary"],
        ),
        ({"assistant_id": "agent", "input": "just text"}, ["messages"]),
        (
            {
                "assistant_id": "agent",
                "input": {"messages": [{"role": "user", "content": "x"}]},
                "stream_mode": "events",
            },
            ["stream_mode"],
        ),
        (
            {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "x"}]}, "webhook": "http://x"},
            ["webhook"],
        ),
        (
            {
                "assistant_id": "agent",
                "input": {"messages": [{"role": "user", "content": "x"}]},
                "webhook": "http://8.8.8.8/hook",
            },
            ["8.8.8.8", "APPLIANCE_WEBHOOK_ALLOWED_NETWORKS"],
        ),
        (
            {
                "assistant_id": "agent",
                "input": {"messages": [{"role": "user", "content": "x"}]},
                "interrupt_before": ["nowhere"],
            },
            ["interrupt_before", "nowhere", "respond"],
        ),
        (
            {
                "assistant_id": "agent",
                "input": {"messages": [{"role": "user", "content": "x"}]},
                "command": {"resume": "yes"},
            },
            ["either"],
        ),
        ({"assistant_id": "agent", "command": {"goto": "nowhere"}}, ["command.goto"]),
        ({"assistant_id": "agent", "command": {"jump": 1}}, ["resume"]),
        ({"assistant_id": "agent", "command": {"goto": ["generate", "respond"]}}, ["one node"]),
        (
            {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "x"}]}, "after_seconds": 3600},
            ["after_seconds", "join"],
        ),  # fmt: skip
        ({"assistant_id": "agent", "command": {"goto": [], "update": {}, "resume": None}}, ["does nothing"]),
        ({"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "word " * 5000}]}}, ["tokens"]),
    ],
)
async def test_bad_run_input_is_422_naming_the_problem(scripted_app, conversation, body, words):
    before = await stored(scripted_app, conversation)
    response = await scripted_app.client.post(f"/threads/{conversation}/runs/wait", json=body)
    assert_error(response, 422, *words)
    assert await stored(scripted_app, conversation) == before


async def test_following_a_run_with_an_unknown_stream_mode_is_422_before_the_stream(scripted_app, conversation):
    run = (await scripted_app.client.post(f"/threads/{conversation}/runs", json=user("x"))).json()
    for modes in (["bogus"], ["\t"], ["values", "", "events"]):
        response = await scripted_app.client.get(
            f"/threads/{conversation}/runs/{run['run_id']}/stream", params={"stream_mode": modes}
        )
        assert_error(response, 422, "stream_mode")


async def test_unknown_assistant_is_404(scripted_app, conversation):
    before = await stored(scripted_app, conversation)
    response = await scripted_app.client.post(
        f"/threads/{conversation}/runs/wait", json=user("x") | {"assistant_id": "gpt"}
    )
    assert_error(response, 404, "assistant")
    assert await stored(scripted_app, conversation) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        # Escapes as a client's JSON encoder writes them (json.dumps does).
        (rb'{"metadata": {"team": "a\u0000b"}}', "metadata.team"),
        (rb'{"metadata": {"notes": ["ok", "\ud800"]}}', "metadata.notes[1]"),
        (rb'{"metadata": {"k\u0000": 1}}', "metadata (a key)"),
    ],
)
async def test_text_postgresql_cannot_store_is_400_naming_the_field(scripted_app, conversation, body, field):
    before = await stored(scripted_app, conversation)
    headers = {"content-type": "application/json"}
    for path in ["/threads", f"/threads/{conversation}"]:
        method = "POST" if path == "/threads" else "PATCH"
        response = await scripted_app.client.request(method, path, content=body, headers=headers)
        assert_error(response, 400, field)
        assert response.json()["error"] == "invalid_text"
    assert await stored(scripted_app, conversation) == before


async def test_a_nul_in_a_message_or_the_query_is_400(scripted_app, conversation):
    before = await stored(scripted_app, conversation)
    body = rb'{"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": "hi\u0000"}]}}'
    response = await scripted_app.client.post(
        f"/threads/{conversation}/runs/wait", content=body, headers={"content-type": "application/json"}
    )
    assert_error(response, 400, "input.messages[0].content", "NUL")
    assert_error(await scripted_app.client.get(f"/threads/{conversation}/runs?status=a%00b"), 400, "status")
    assert await stored(scripted_app, conversation) == before
    # A paired surrogate is an ordinary character (here an emoji) and goes through.
    fine = await scripted_app.client.patch(
        f"/threads/{conversation}",
        content=rb'{"metadata": {"mood": "\ud83d\ude00"}}',
        headers={"content-type": "application/json"},
    )
    assert fine.status_code == 200, fine.text
    assert fine.json()["metadata"]["mood"] == "\N{GRINNING FACE}"


async def test_numbers_past_what_postgresql_holds_are_400(scripted_app, conversation):
    before = await stored(scripted_app, conversation)
    huge = 2**64
    assert_error(await scripted_app.client.get(f"/threads/{conversation}/runs?offset={huge}"), 400, "offset")
    assert_error(await scripted_app.client.post("/threads/search", json={"offset": huge}), 400, "offset")
    assert await stored(scripted_app, conversation) == before


async def test_unknown_checkpoint_is_404(scripted_app, conversation):
    missing = str(uuid.uuid4())
    assert_error(await scripted_app.client.get(f"/threads/{conversation}/state/{missing}"), 404, missing)
    known = (await scripted_app.client.get(f"/threads/{conversation}/state")).json()["checkpoint"]["checkpoint_id"]
    assert (await scripted_app.client.get(f"/threads/{conversation}/state/{known}")).status_code == 200


async def test_preflight_on_an_admin_route_is_not_an_error(scripted_app):
    tenant = await scripted_app.tenant_client("preflight")
    async with tenant:
        response = await tenant.options("/keys")
        assert response.status_code in (200, 204), response.text
        assert_error(await tenant.get("/keys"), 403, "admin")


async def test_a_nul_under_v1_is_refused_in_openais_shape(scripted_app):
    body = rb'{"model": "agent", "messages": [{"role": "user", "content": "a\u0000b"}]}'
    response = await scripted_app.client.post(
        "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_text"
    assert "messages[0].content" in error["message"] and error["param"] == "messages[0].content"


@pytest.mark.parametrize("path", ["/threads/{tid}/runs/wait", "/runs/wait"], ids=["thread", "stateless"])
async def test_a_run_without_input_on_a_thread_without_state_is_409(scripted_app, path):
    """Nothing to go on from: refused before anything is queued (it was a 500 from the graph)."""
    tid = await new_thread(scripted_app.client)
    response = await scripted_app.client.post(path.format(tid=tid), json={"assistant_id": "agent", "input": None})
    assert response.status_code == 409, response.text
    assert "no state to go on from" in response.json()["detail"]
    assert (await scripted_app.client.get(f"/threads/{tid}/runs")).json() == []
    command = {"assistant_id": "agent", "command": {"goto": "refuse"}}
    steered = await scripted_app.client.post(path.format(tid=tid), json=command)
    assert steered.status_code == 409, steered.text
    # With state, a run without input goes on from it, as LangGraph's server does.
    await turn(scripted_app.client, tid, "hello")
    again = await scripted_app.client.post(f"/threads/{tid}/runs/wait", json={"assistant_id": "agent"})
    assert again.status_code == 200, again.text
