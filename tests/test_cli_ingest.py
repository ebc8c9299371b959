"""``appliance ingest``: files and folders into a knowledge base, refusals named, the batch carried on."""

from __future__ import annotations

import asyncio
import sys

from tests.support.corpus import write_corpus


async def ingest(url: str, key: str, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.cli.main", "ingest", "--url", url, "--key", key, *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": ""},
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode, out.decode(), err.decode()


async def test_ingest_walks_folders_reports_each_refusal_and_summarises(scripted_app, tmp_path):
    folder = tmp_path / "docs"
    write_corpus(folder / "corpus")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "logo.png").write_bytes(b"\x89PNG\r\n")
    (folder / ".hidden.md").write_text("# skipped")

    code, out, err = await ingest(scripted_app.url, scripted_app.admin_key, str(folder), "-k", "manuals")
    assert code == 1, err  # some files were refused
    assert "empty.txt: refused: empty.txt is empty" in out
    assert "logo.png: refused: logo.png: files of type '.png' are not supported" in out
    assert "report.pdf: created (2 chunks)" in out
    assert ".hidden.md" not in out
    assert out.strip().endswith("6 files: 4 created, 2 refused; 8 chunks indexed")

    kbs = (await scripted_app.client.get("/knowledge-bases")).json()
    kb_id = next(kb["knowledge_base_id"] for kb in kbs if kb["name"] == "manuals")
    documents = (await scripted_app.client.get(f"/knowledge-bases/{kb_id}/documents")).json()
    assert sorted(d["source"] for d in documents) == ["faq.html", "handbook.md", "hours.txt", "report.pdf"]

    # A second run finds the knowledge base by name and writes nothing.
    code, out, err = await ingest(scripted_app.url, scripted_app.admin_key, str(folder / "corpus"), "-k", "manuals")
    assert code == 0, err
    assert out.strip().endswith("4 files: 4 unchanged; 0 chunks indexed")


async def test_ingest_of_a_missing_path_says_so(scripted_app, tmp_path):
    code, _out, err = await ingest(scripted_app.url, scripted_app.admin_key, str(tmp_path / "nope"), "-k", "x")
    assert code == 2
    assert "no such file or folder" in err
