"""Rate limits per key and per tenant, counted in PostgreSQL: a real
``appliance serve`` process and an appliance in the test's process share one
database, and a burst split between them is counted once."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest

from appliance.store.audit import Actor
from tests.support.app import Served, model_delay, serve_scripted
from tests.support.fake_ollama import MODEL, FakeOllama
from tests.support.process import appliance_env, start_server
from tests.support.services import free_port
from tests.support.turns import new_kb, new_thread, upload, user

pytestmark = pytest.mark.timeout(300)

KEY_PER_MINUTE = 20
TENANT_PER_MINUTE = 60


def limited(response: httpx.Response, name: str) -> bool:
    """A 429 that names the limit and says when to come back."""
    if response.status_code != 429:
        return False
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60, retry_after
    assert name in response.json()["detail"], response.text
    return True


async def same_minute(seconds_needed: float) -> None:
    """Start a burst early enough in a minute that it ends in the same counting window."""
    second = datetime.now(UTC).second
    if second > 60 - seconds_needed:
        await asyncio.sleep(61 - second)


@pytest.fixture
async def two_processes(databases, chroma_url, tmp_path) -> AsyncIterator[tuple[Served, str]]:
    """An appliance here, and ``appliance serve`` in a process of its own, on one database."""
    url = databases.create()
    limits = {
        "limit_key_requests_per_minute": str(KEY_PER_MINUTE),
        "limit_tenant_requests_per_minute": str(TENANT_PER_MINUTE),
        "limit_key_runs_in_flight": "1",
    }
    async with serve_scripted(tmp_path / "here", url, chroma_url, **limits) as here:
        with FakeOllama() as ollama:
            env = appliance_env(
                tmp_path / "there", url, chroma_url, llm_provider="ollama", ollama_url=ollama.url, ollama_model=MODEL,
                worker_slots=0,  # runs are executed here, by the scripted model
                **limits,
            )  # fmt: skip
            there = await asyncio.to_thread(start_server, env, free_port(), tmp_path / "there.log")
            try:
                yield here, there.url
            finally:
                there.stop()


async def key_of(app: Served, tenant: str) -> str:
    _, secret = await app.runtime.keys.create(tenant, actor=Actor.host())
    return secret


def client(url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=60, trust_env=False)


async def test_a_burst_from_one_key_is_limited_across_processes_while_other_keys_are_served(two_processes):
    here, there = two_processes
    tenant = f"burst-{uuid.uuid4().hex[:6]}"
    bursting, colleague, other = [await key_of(here, t) for t in (tenant, tenant, "elsewhere")]
    async with (
        client(here.url, bursting) as one,
        client(there, bursting) as two,
        client(there, colleague) as same_tenant,
        client(here.url, other) as other_tenant,
    ):
        await same_minute(20)
        # Half the burst to each process: each alone sees 15, under the limit of 20.
        answers = await asyncio.gather(*[(one if i % 2 else two).get("/knowledge-bases") for i in range(30)])
        refused = [a for a in answers if limited(a, "key_requests_per_minute")]
        assert len(refused) == 30 - KEY_PER_MINUTE, [a.status_code for a in answers]
        assert {a.status_code for a in answers} == {200, 429}
        assert "this API key" in refused[0].json()["detail"]

        # The same tenant's other key, and another tenant, are served meanwhile.
        assert (await same_tenant.get("/knowledge-bases")).status_code == 200
        assert (await other_tenant.get("/knowledge-bases")).status_code == 200
        # The OpenAI API says it in OpenAI's shape, which its clients turn into RateLimitError.
        openai = await one.get("/v1/models")
        assert openai.status_code == 429 and openai.json()["error"]["type"] == "rate_limit_error"


async def test_the_tenant_limit_holds_for_all_its_keys_together(two_processes):
    here, there = two_processes
    tenant = f"team-{uuid.uuid4().hex[:6]}"
    keys = [await key_of(here, tenant) for _ in range(4)]
    other = await key_of(here, "bystander")
    clients = [client(url, k) for url, k in zip([here.url, there] * 2, keys, strict=True)]
    try:
        await same_minute(20)
        # 4 keys x 18 requests: every key under its own 20, the tenant over its 60.
        answers = await asyncio.gather(*[c.get("/knowledge-bases") for c in clients for _ in range(18)])
        refused = [a for a in answers if limited(a, "tenant_requests_per_minute")]
        assert len(refused) == 4 * 18 - TENANT_PER_MINUTE, [a.status_code for a in answers]
        assert f"tenant {tenant!r}" in refused[0].json()["detail"]
        async with client(there, other) as bystander:
            assert (await bystander.get("/knowledge-bases")).status_code == 200
    finally:
        for c in clients:
            await c.aclose()


async def test_runs_in_flight_are_limited_per_key_and_per_tenant_by_its_own_limits(two_processes):
    here, there = two_processes
    tenant = f"runs-{uuid.uuid4().hex[:6]}"
    first_key, second_key, third_key = [await key_of(here, tenant) for _ in range(3)]
    async with (
        client(here.url, first_key) as first,
        client(there, first_key) as first_elsewhere,
        client(there, second_key) as second,
        client(here.url, third_key) as third,
    ):
        with model_delay(here, 0.3):  # each answer takes a few seconds
            started = await first.post(f"/threads/{await new_thread(first)}/runs", json=user("a long answer"))
            assert started.status_code == 200, started.text
            # The key's one run in flight is seen from the other process too.
            again = await first_elsewhere.post(f"/threads/{await new_thread(first_elsewhere)}/runs", json=user("more"))
            assert limited(again, "key_runs_in_flight")
            # Another key of the tenant is not held back by it...
            other = await second.post(f"/threads/{await new_thread(second)}/runs", json=user("mine"))
            assert other.status_code == 200, other.text

            # ...until the tenant's own limit says two runs at once, for all its keys together.
            set_limits = await here.client.put(f"/tenants/{tenant}/limits", json={"tenant_runs_in_flight": 2})
            assert set_limits.status_code == 200, set_limits.text
            assert set_limits.json()["own"] == {"tenant_runs_in_flight": 2}
            assert set_limits.json()["limits"]["key_runs_in_flight"] == 1  # the appliance's setting
            held = await third.post(f"/threads/{await new_thread(third)}/runs", json=user("and mine"))
            assert limited(held, "tenant_runs_in_flight")
            # Nothing was queued for a refused run.
            assert held.headers.get("location") is None

        # Once its run has ended, the key may start another.
        run = started.json()
        assert (await first.get(f"/threads/{run['thread_id']}/runs/{run['run_id']}/join")).status_code == 200
        again = await first_elsewhere.post(f"/threads/{await new_thread(first_elsewhere)}/runs/wait", json=user("now"))
        assert again.status_code == 200, again.text


async def test_uploads_in_flight_are_counted_across_processes(databases, chroma_url, tmp_path):
    async with (
        # One data folder: the second finds the first's admin key file.
        serve_scripted(tmp_path, url := databases.create(), chroma_url, limit_key_uploads_in_flight="1") as a,
        serve_scripted(tmp_path, url, chroma_url, limit_key_uploads_in_flight="1") as b,
    ):
        key, secret = await a.runtime.keys.create("uploads", actor=Actor.host())
        async with b.as_key(secret) as uploader:
            kb_id = await new_kb(uploader)
            # An upload of this key is being ingested by the other appliance.
            async with a.runtime.limits.uploading(key.key_id, "uploads"):
                refused = await upload(uploader, kb_id, "notes.md", b"# Notes\n\nThe lift is serviced on Mondays.\n")
                assert limited(refused, "key_uploads_in_flight")
            accepted = await upload(uploader, kb_id, "notes.md", b"# Notes\n\nThe lift is serviced on Mondays.\n")
            assert accepted.status_code == 201, accepted.text


async def test_a_tenants_limits_are_checked_and_admins_only(scripted_app):
    tenant = f"limits-{uuid.uuid4().hex[:6]}"
    defaults = await scripted_app.client.get(f"/tenants/{tenant}/limits")
    assert defaults.status_code == 200 and defaults.json()["own"] == {}
    assert (
        defaults.json()["limits"]["key_requests_per_minute"]
        == scripted_app.runtime.settings.limit_key_requests_per_minute
    )

    unknown = await scripted_app.client.put(f"/tenants/{tenant}/limits", json={"requests": 5})
    assert unknown.status_code == 400 and "requests" in unknown.json()["detail"]
    negative = await scripted_app.client.put(f"/tenants/{tenant}/limits", json={"key_runs_in_flight": -1})
    assert negative.status_code == 400 and "key_runs_in_flight" in negative.json()["detail"]
    bad_name = await scripted_app.client.get("/tenants/not a tenant/limits")
    assert bad_name.status_code == 400 and "tenant_name" in bad_name.json()["detail"]

    # Back to the settings: a limit sent as null is not the tenant's own.
    await scripted_app.client.put(f"/tenants/{tenant}/limits", json={"key_runs_in_flight": 3})
    cleared = await scripted_app.client.put(f"/tenants/{tenant}/limits", json={"key_runs_in_flight": None})
    assert cleared.status_code == 200 and cleared.json()["own"] == {}

    async with await scripted_app.tenant_client(tenant) as user_client:
        assert (await user_client.get(f"/tenants/{tenant}/limits")).status_code == 403
        assert (await user_client.put(f"/tenants/{tenant}/limits", json={})).status_code == 403


async def test_a_request_is_authenticated_and_counted_in_one_round_trip(scripted_app):
    """The key's lookup and the request's count are one statement: ``/metrics``,
    which reads nothing from PostgreSQL itself, takes one pooled connection, and
    the request is counted for its key. (The fewest of five: the worker's
    heartbeat may take a connection meanwhile.)"""
    pool, client = scripted_app.runtime.pool, scripted_app.client
    key = await scripted_app.runtime.keys.authenticate(scripted_app.admin_key)

    async def counted() -> int:
        async with pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT coalesce(sum(n), 0) AS n FROM request_counts WHERE scope = %s", (f"key:{key.key_id}",)
                )
            ).fetchone()
        return row["n"]

    taken = []
    for _ in range(5):
        before, requests_before = pool.get_stats()["requests_num"], await counted()
        assert (await client.get("/metrics")).status_code == 200
        taken.append(pool.get_stats()["requests_num"] - before - 1)  # less the count read just above
        assert await counted() - requests_before == 1
    assert min(taken) == 1, taken


def test_the_api_names_every_limit_the_store_keeps():
    from appliance.api.schemas import LimitsUpdate
    from appliance.store.limits import LIMIT_NAMES

    assert LimitsUpdate.__struct_fields__ == LIMIT_NAMES
