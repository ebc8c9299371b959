"""API keys: hashed at rest, managed by admins (CLI and API), scoped to a tenant."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from tests.support.turns import new_thread, turn


async def test_keys_are_stored_as_hashes_only(scripted_app):
    async with scripted_app.runtime.pool.connection() as conn:
        rows = await (await conn.execute("SELECT key_hash, prefix FROM api_keys")).fetchall()
    hashes = {bytes(r["key_hash"]) for r in rows}
    assert hashlib.sha256(scripted_app.admin_key.encode()).digest() in hashes
    dump = repr(rows)
    assert scripted_app.admin_key not in dump


async def test_first_admin_key_file_is_private(scripted_app):
    path = scripted_app.runtime.settings.admin_key_path
    assert oct(path.stat().st_mode & 0o777) == "0o600"


async def test_admin_manages_keys_over_the_api_and_revocation_takes_effect(scripted_app):
    created = await scripted_app.client.post("/keys", json={"tenant": "team-a", "name": "laptop"})
    assert created.status_code == 201
    secret, info = created.json()["key"], created.json()["info"]
    assert info["tenant"] == "team-a" and not info["admin"] and secret.startswith(info["prefix"])

    async with scripted_app.as_key(secret) as team_a:
        tid = await new_thread(team_a)
        assert (await team_a.get("/keys")).status_code == 403
        assert (await team_a.get("/metrics")).status_code == 403
        listed = (await scripted_app.client.get("/keys", params={"tenant": "team-a"})).json()
        assert [k["key_id"] for k in listed] == [info["key_id"]]
        assert all("key" not in k for k in listed)

        revoked = await scripted_app.client.delete(f"/keys/{info['key_id']}")
        assert revoked.status_code == 200 and revoked.json()["revoked_at"]
        assert (await team_a.get(f"/threads/{tid}")).status_code == 401


async def test_bad_tenant_name_is_422(scripted_app):
    response = await scripted_app.client.post("/keys", json={"tenant": "no spaces allowed"})
    assert response.status_code == 422 and "tenant" in response.json()["detail"]


async def test_tenants_see_only_their_own_threads(scripted_app):
    async with await scripted_app.tenant_client("blue") as blue, await scripted_app.tenant_client("green") as green:
        blue_tid = await new_thread(blue, colour="blue")
        await turn(blue, blue_tid, "blue secret")
        green_tid = await new_thread(green, colour="green")
        assert [t["thread_id"] for t in (await blue.post("/threads/search", json={})).json()] == [blue_tid]
        assert [t["thread_id"] for t in (await green.post("/threads/search", json={})).json()] == [green_tid]


def test_cli_creates_a_key_printed_alone_on_the_last_line_and_lists_it(databases, tmp_path):
    env = {**os.environ, "APPLIANCE_DATABASE_URL": databases.create(), "APPLIANCE_DATA_DIR": str(tmp_path)}
    appliance = [sys.executable, "-m", "appliance.cli.main"]
    out = subprocess.run(
        [*appliance, "keys", "create", "--tenant", "finance", "--name", "ci"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    key = out.strip().splitlines()[-1]
    assert key.startswith("apk_") and " " not in key
    listing = subprocess.run([*appliance, "keys", "list"], env=env, capture_output=True, text=True, check=True).stdout
    assert "finance" in listing and key[:12] in listing and key not in listing
    key_id = listing.split()[0]
    revoked = subprocess.run(
        [*appliance, "keys", "revoke", key_id], env=env, capture_output=True, text=True, check=True
    )
    assert "revoked" in revoked.stdout
    bad = subprocess.run(
        [*appliance, "keys", "create", "--tenant", "bad tenant"], env=env, capture_output=True, text=True
    )
    assert bad.returncode == 2 and "tenant must be" in bad.stderr


async def test_the_web_chat_and_docs_need_no_key_and_load_nothing_from_outside(scripted_app):
    async with scripted_app.as_key(None) as anonymous:
        page = await anonymous.get("/")
        assets = [await anonymous.get(f"/web/{name}") for name in ("app.js", "style.css", "icon.svg")]
        docs = await anonymous.get("/docs")
        missing = await anonymous.get("/web/runtime.py")  # only the chat's own files are served
    assert page.status_code == 200 and 'id="signin-form"' in page.text
    assert [a.status_code for a in assets] == [200, 200, 200]
    assert missing.status_code == 404
    for text in (page.text, docs.text, *(a.text for a in assets)):
        text = text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not an address
        assert "https://" not in text and "http://" not in text
    assert "/static/swagger/swagger-ui-bundle.js" in docs.text


async def test_the_last_active_admin_key_cannot_be_revoked(databases, chroma_url, tmp_path):
    """Revoking it would leave no admin on the API (only host access to the CLI recovers that): 409,
    decided under a lock, so two admins revoking each other at once leave one."""
    import asyncio

    from tests.support.app import serve_scripted

    async with serve_scripted(tmp_path, databases.create(), chroma_url) as app:
        [first] = [k for k in (await app.client.get("/keys")).json() if k["admin"]]
        refused = await app.client.delete(f"/keys/{first['key_id']}")
        assert refused.status_code == 409, refused.text
        assert "last active admin key" in refused.json()["detail"]
        assert (await app.client.get("/keys")).status_code == 200  # still an admin

        created = await app.client.post("/keys", json={"tenant": "default", "name": "second", "admin": True})
        second = created.json()
        async with app.as_key(second["key"]) as other:
            # Each revokes the other at once: exactly one of them goes.
            answers = await asyncio.gather(
                app.client.delete(f"/keys/{second['info']['key_id']}"), other.delete(f"/keys/{first['key_id']}")
            )
        # The other is 409 (the last admin now), or 401 when its own key went before it was checked.
        statuses = sorted(a.status_code for a in answers)
        assert statuses in ([200, 409], [200, 401]), [a.text for a in answers]
        active = [k for k in (await app.runtime.keys.list()) if k.is_admin and k.revoked_at is None]
        assert len(active) == 1
