"""The audit log: every admin action once, with who and when, read through
``GET /audit`` and ``appliance audit``, and never a secret, a document's text
or a question, neither in the table nor in the server's log."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.support.fake_ollama import MODEL, FakeOllama
from tests.support.process import appliance_env, start_server
from tests.support.services import free_port
from tests.support.turns import user

pytestmark = pytest.mark.timeout(300)

DOCUMENT = b"# Parking\n\nVisitors park in the blue zone behind building C, next to the bicycle shed.\n"
QUESTION = "Where do visitors park when they come to building C?"


@pytest.fixture
def server(databases, chroma_url, tmp_path):
    url = databases.create()
    with FakeOllama() as ollama:
        env = appliance_env(
            tmp_path / "data", url, chroma_url, llm_provider="ollama", ollama_url=ollama.url, ollama_model=MODEL,
            log_format="json", log_level="debug",
        )  # fmt: skip
        process = start_server(env, free_port(), tmp_path / "server.log")
        try:
            yield process, env, url
        finally:
            process.stop()


def cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    appliance = Path(sys.executable).with_name("appliance")
    return subprocess.run(
        [str(appliance), *argv], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_each_admin_action_is_recorded_once_with_who_and_when_and_no_secret(server, tmp_path):
    process, env, database_url = server
    admin_key = (tmp_path / "data" / "admin-key").read_text().strip()
    began = datetime.now(UTC)
    with httpx.Client(base_url=process.url, headers={"x-api-key": admin_key}, timeout=120, trust_env=False) as admin:
        created = admin.post("/keys", json={"tenant": "hr", "name": "hr desk"}).json()
        hr_key, hr_key_id = created["key"], created["info"]["key_id"]
        with httpx.Client(base_url=process.url, headers={"x-api-key": hr_key}, timeout=120, trust_env=False) as hr:
            kb_id = hr.post("/knowledge-bases", json={"name": "facilities"}).json()["knowledge_base_id"]
            uploaded = hr.post(f"/knowledge-bases/{kb_id}/documents", files={"file": ("parking.md", DOCUMENT)})
            assert uploaded.status_code == 201, uploaded.text
            doc_id = uploaded.json()["document_id"]
            # The same upload again changes nothing, and is not an event.
            again = hr.post(f"/knowledge-bases/{kb_id}/documents", files={"file": ("parking.md", DOCUMENT)})
            assert again.status_code == 200
            thread_id = hr.post("/threads", json={}).json()["thread_id"]
            assert hr.post(f"/threads/{thread_id}/runs/wait", json=user(QUESTION)).status_code == 200
            assert hr.delete(f"/knowledge-bases/{kb_id}/documents/{doc_id}").status_code == 204
            assert hr.delete(f"/knowledge-bases/{kb_id}").status_code == 204
            # Not an admin: the log is not theirs to read.
            assert hr.get("/audit").status_code == 403
        assert admin.put("/tenants/hr/limits", json={"key_runs_in_flight": 2}).status_code == 200
        assert admin.put("/tenants/hr/limits", json={"key_runs_in_flight": 2}).status_code == 200  # no change
        assert admin.delete(f"/keys/{hr_key_id}").status_code == 200
        assert admin.delete(f"/keys/{hr_key_id}").status_code == 200  # revoked already: no second event
        # A key cannot revoke itself, even with another admin left; the refusal changes nothing.
        assert admin.post("/keys", json={"tenant": "default", "name": "deputy", "admin": True}).status_code == 201
        [me] = [k for k in admin.get("/keys").json() if k["prefix"] == admin_key[:12]]
        itself = admin.delete(f"/keys/{me['key_id']}")
        assert itself.status_code == 409 and "cannot revoke itself" in itself.json()["detail"]

        # Six wrong keys from one address in a minute: one row, counting them.
        wrong = "apk_" + "x" * 43
        for _ in range(5):
            assert admin.get("/knowledge-bases", headers={"x-api-key": wrong}).status_code == 401
        assert httpx.get(f"{process.url}/knowledge-bases", trust_env=False).status_code == 401

        # And one action on the host, by its CLI.
        made = cli(env, "keys", "create", "--tenant", "ops", "--name", "night shift")
        assert made.returncode == 0, made.stderr
        ops_key = made.stdout.strip().splitlines()[-1]

        events = admin.get("/audit", params={"since": began.isoformat()}).json()

    actions = Counter(e["action"] for e in events)
    assert actions == {
        "key.created": 3,
        "knowledge_base.created": 1,
        "document.created": 1,
        "document.deleted": 1,
        "knowledge_base.deleted": 1,
        "tenant.limits_changed": 1,
        "key.revoked": 1,
        "auth.failed": 1,
    }, actions
    by_action = {e["action"]: e for e in events}
    admin_prefix = admin_key[:12]
    assert by_action["key.revoked"]["actor"].startswith(f"key:{admin_prefix}")
    assert by_action["key.revoked"]["target"] == hr_key_id and by_action["key.revoked"]["tenant"] == "hr"
    assert by_action["document.created"]["actor"].startswith(f"key:{hr_key[:12]}")
    assert by_action["document.created"]["actor_tenant"] == "hr"
    assert by_action["document.created"]["detail"]["source"] == "parking.md"
    assert by_action["document.deleted"]["target"] == doc_id
    assert by_action["knowledge_base.deleted"]["detail"] == {"name": "facilities"}
    assert by_action["tenant.limits_changed"]["detail"] == {"before": {}, "after": {"key_runs_in_flight": 2}}
    assert by_action["auth.failed"]["detail"]["attempts"] == 6 and by_action["auth.failed"]["source"] == "127.0.0.1"
    host_created = [e for e in events if e["action"] == "key.created" and e["tenant"] == "ops"]
    assert host_created[0]["actor"].startswith("host:") and host_created[0]["detail"]["name"] == "night shift"
    for event in events:  # who and when
        assert event["actor"] and began <= datetime.fromisoformat(event["at"]) <= datetime.now(UTC)
        assert event["source"] in ("127.0.0.1", "local")

    # The host's view: the same events, filtered by tenant and time.
    shown = cli(env, "audit", "--since", "10m", "--tenant", "hr", "--json")
    assert shown.returncode == 0, shown.stderr
    hr_events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert {e["event_id"] for e in hr_events} == {
        e["event_id"] for e in events if "hr" in (e["tenant"], e["actor_tenant"])
    }
    human = cli(env, "audit", "--action", "key.revoked")
    assert human.returncode == 0 and hr_key_id in human.stdout and "key.revoked" in human.stdout
    assert cli(env, "audit", "--since", "yesterday-ish").returncode == 2

    # No secret, document text or question anywhere in the table or the log.
    with psycopg.connect(database_url) as conn:
        table = "\n".join(r[0] for r in conn.execute("SELECT audit_log::text FROM audit_log"))
    # The log's records; the embedded profile's first-start banner, which shows the
    # new admin key once on the terminal by design, is not one of them.
    log = "\n".join(line for line in process.output().splitlines() if line.startswith("{"))
    assert '"msg": "appliance ready"' in log or "appliance ready" in log
    for text in (table, log):
        for secret in (admin_key, hr_key, ops_key, wrong, admin_key[12:], hr_key[12:]):
            assert secret not in text
        assert "blue zone" not in text and QUESTION not in text
    assert hr_key_id in table  # the table is the one we meant to read


async def test_the_log_is_paged_oldest_first(scripted_app):
    client = scripted_app.client
    for _ in range(3):
        assert (await client.post("/knowledge-bases", json={"name": f"paged-{os.urandom(3).hex()}"})).status_code == 201
    first = (await client.get("/audit", params={"action": "knowledge_base.created", "limit": 2})).json()
    assert len(first) == 2 and first[0]["event_id"] < first[1]["event_id"]
    rest = (
        await client.get("/audit", params={"action": "knowledge_base.created", "after": first[-1]["event_id"]})
    ).json()
    assert rest and rest[0]["event_id"] > first[-1]["event_id"]
    bad = await client.get("/audit", params={"limit": 0})
    assert bad.status_code == 400
    # A bare number is not a time (msgspec would read it as seconds since 1970).
    not_a_time = await client.get("/audit", params={"since": "0.5"})
    assert not_a_time.status_code == 422 and "ISO 8601" in not_a_time.json()["detail"]
    with_offset = await client.get("/audit", params={"since": "2000-01-01T00:00:00+02:00"})
    assert with_offset.status_code == 200 and len(with_offset.json()) >= 3
