"""``appliance backup`` and ``appliance restore``: a conversation and a knowledge
base survive the move onto a fresh database and a fresh Chroma server (a new
host), and restore never writes over data that is already there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.store.backup import BackupError, read_manifest, restore
from tests.support.app import make_settings, serve_scripted
from tests.support.librarian import Librarian
from tests.support.services import chroma_server
from tests.support.turns import new_kb, new_thread, turn, upload

QUESTION = "How many pallets does the Rotterdam warehouse hold?"
DOCUMENT = b"# Warehouses\n\nThe Rotterdam warehouse holds 48000 pallets and ships to Antwerp every night.\n"


def cli(settings_env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    appliance = Path(sys.executable).with_name("appliance")
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")} | settings_env
    return subprocess.run([str(appliance), *args], env=env, capture_output=True, text=True, timeout=300)


def env_of(data_dir: Path, database_url: str, chroma_url: str) -> dict[str, str]:
    return {
        "APPLIANCE_DATA_DIR": str(data_dir),
        "APPLIANCE_DATABASE_URL": database_url,
        "APPLIANCE_CHROMA_URL": chroma_url,
        "APPLIANCE_CHROMA_COLLECTION": f"chunks-{database_url.rsplit('/', 1)[-1]}",
    }


@pytest.fixture(scope="module")
async def original(databases, chroma_url, tmp_path_factory):
    """An appliance with one knowledge base and a two-turn conversation about it."""
    data_dir, url = tmp_path_factory.mktemp("original"), databases.create()
    async with serve_scripted(data_dir, url, chroma_url, reply=Librarian()) as served:
        kb_id = await new_kb(served.client, "warehouses")
        assert (await upload(served.client, kb_id, "warehouses.md", DOCUMENT)).status_code == 201
        thread_id = await new_thread(served.client, knowledge_bases=[kb_id])
        first = await turn(served.client, thread_id, QUESTION)
        assert first["citations"], "the original appliance answers from the document"
        await turn(served.client, thread_id, "Thank you, and the night shipments go where?")
        state = (await served.client.get(f"/threads/{thread_id}/state")).json()
    return {"env": env_of(data_dir, url, chroma_url), "thread_id": thread_id, "kb_id": kb_id, "state": state}


async def test_backup_restored_on_a_fresh_host_keeps_the_conversation_and_the_documents(
    original, databases, tmp_path_factory
):
    archive = tmp_path_factory.mktemp("backups") / "appliance.tar.gz"
    done = cli(original["env"], "backup", "--output", str(archive))
    assert done.returncode == 0, done.stderr
    assert "vectors" in done.stdout and archive.stat().st_mode & 0o777 == 0o600
    assert read_manifest(archive).vectors >= 1

    # A new host: an empty database and a Chroma server with nothing in it.
    fresh_dir = tmp_path_factory.mktemp("fresh")
    with chroma_server(fresh_dir) as fresh_chroma:
        fresh_url = databases.create()
        restored = cli(env_of(fresh_dir, fresh_url, fresh_chroma), "restore", str(archive))
        assert restored.returncode == 0, restored.stderr

        # The original admin key works there: keys were restored with everything else.
        original_key = Path(original["env"]["APPLIANCE_DATA_DIR"]) / "admin-key"
        (fresh_dir / "admin-key").write_text(original_key.read_text())
        async with serve_scripted(fresh_dir, fresh_url, fresh_chroma, reply=Librarian()) as served:
            state = (await served.client.get(f"/threads/{original['thread_id']}/state")).json()
            assert state["values"]["messages"] == original["state"]["values"]["messages"]
            # The conversation goes on, and the documents are found through the restored vectors.
            values = await turn(served.client, original["thread_id"], QUESTION)
            assert [c["source"] for c in values["citations"]] == ["warehouses.md"]
            assert len(values["messages"]) == len(original["state"]["values"]["messages"]) + 2


async def test_restore_refuses_a_database_in_use_and_changes_nothing(original, tmp_path_factory):
    archive = tmp_path_factory.mktemp("backups") / "appliance.tar.gz"
    assert cli(original["env"], "backup", "--output", str(archive)).returncode == 0
    before = original["state"]["values"]["messages"]

    refused = cli(original["env"], "restore", str(archive))
    assert refused.returncode == 2
    assert "already holds" in refused.stderr and "empty database" in refused.stderr

    settings = make_settings(Path(original["env"]["APPLIANCE_DATA_DIR"]), original["env"]["APPLIANCE_DATABASE_URL"],
                             original["env"]["APPLIANCE_CHROMA_URL"])  # fmt: skip
    with pytest.raises(BackupError, match="already holds"):
        restore(settings, archive)
    async with serve_scripted(Path(original["env"]["APPLIANCE_DATA_DIR"]), settings.database_url,
                              original["env"]["APPLIANCE_CHROMA_URL"], reply=Librarian()) as served:  # fmt: skip
        state = (await served.client.get(f"/threads/{original['thread_id']}/state")).json()
        assert state["values"]["messages"][: len(before)] == before


def test_restore_of_a_file_that_is_not_a_backup_says_so(original, tmp_path):
    bogus = tmp_path / "notes.tar.gz"
    bogus.write_bytes(b"not a tar file")
    refused = cli(original["env"], "restore", str(bogus))
    assert refused.returncode == 2
    assert "is not an appliance backup" in refused.stderr
