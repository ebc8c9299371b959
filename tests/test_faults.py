"""Faults under load: PostgreSQL restarted, Chroma killed, the data disk full.

Each test keeps a steady load of turns on the appliance while the fault
happens, counts what every request got, and then checks that every run the
appliance accepted finished. The servers are the tests' own (a private
PostgreSQL it may stop, a Chroma server it may kill), never the shared ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest

from tests.support.app import serve_scripted
from tests.support.services import PrivatePostgres
from tests.support.turns import new_thread, user

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT_S = 15  # a request that takes longer counts as a hang
FINAL = {"success", "error", "timeout", "interrupted"}


@dataclass
class Load:
    """What a steady load of turns saw: every response counted by status."""

    statuses: Counter = field(default_factory=Counter)
    accepted: list[tuple[str, str]] = field(default_factory=list)  # (thread, run)
    hangs: int = 0
    missing_retry_after: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(self, client: httpx.AsyncClient, method: str, url: str, **kwargs) -> httpx.Response | None:
        try:
            response = await client.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
        except httpx.TimeoutException:
            self.hangs += 1
            return None
        self.statuses[response.status_code] += 1
        if response.status_code == 503 and not response.headers.get("retry-after"):
            self.missing_retry_after += 1
        return response

    async def turns(self, client: httpx.AsyncClient, thread_id: str) -> None:
        """One conversation: a turn, waited for until it ends, then the next."""
        number = 0
        while not self.stop.is_set():
            number += 1
            body = user(f"turn {number}: tell me about bees")
            created = await self.request(client, "POST", f"/threads/{thread_id}/runs", json=body)
            if created is None or created.status_code != 200:
                await asyncio.sleep(0.2)
                continue
            run_id = created.json()["run_id"]
            self.accepted.append((thread_id, run_id))
            while True:  # joined again after a 503 until the run has ended
                joined = await self.request(client, "GET", f"/threads/{thread_id}/runs/{run_id}/join")
                if joined is not None and joined.status_code == 200:
                    break
                await asyncio.sleep(0.2)

    async def final_statuses(self, client: httpx.AsyncClient, deadline_s: float = 90) -> Counter:
        """How each accepted run ended, waiting for those still going."""
        ended: Counter = Counter()
        deadline = time.monotonic() + deadline_s
        for thread_id, run_id in self.accepted:
            while True:
                status = (await client.get(f"/threads/{thread_id}/runs/{run_id}")).json()["status"]
                if status in FINAL or time.monotonic() > deadline:
                    ended[status] += 1
                    break
                await asyncio.sleep(0.2)
        return ended


async def message_kinds(client: httpx.AsyncClient, thread_id: str) -> list[str]:
    state = (await client.get(f"/threads/{thread_id}/state")).json()
    return [m["type"] for m in state["values"].get("messages", [])]


async def first_success_after(client: httpx.AsyncClient, method: str, url: str, since: float, **kwargs) -> float:
    """Seconds from ``since`` until a request of this kind succeeds again."""
    while True:
        try:
            response = await client.request(method, url, timeout=REQUEST_TIMEOUT_S, **kwargs)
            if response.status_code == 200:
                return time.monotonic() - since
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)


async def test_postgres_restarted_under_load_answers_503_recovers_in_seconds_and_loses_no_run(
    tmp_path, chroma_url, capsys
):
    postgres = PrivatePostgres()
    postgres.start()
    try:
        async with serve_scripted(tmp_path / "app", postgres.url, chroma_url, delay=0.005) as served:
            client = served.client
            threads = [await new_thread(client) for _ in range(4)]
            load = Load()
            conversations = [asyncio.create_task(load.turns(client, t)) for t in threads]
            await asyncio.sleep(3)
            before = load.statuses[200]

            await asyncio.to_thread(postgres.stop)
            await asyncio.sleep(4)
            during = Counter(load.statuses)
            await asyncio.to_thread(postgres.start)
            back = time.monotonic()
            recovered_s = await first_success_after(client, "POST", "/threads", back, json={})

            await asyncio.sleep(4)
            load.stop.set()
            await asyncio.gather(*conversations)
            ended = await load.final_statuses(client)
            kept = {t: await message_kinds(client, t) for t in threads}
            after_recovery = load.statuses[200] - during[200]
            async with await psycopg.AsyncConnection.connect(postgres.url) as conn:
                cut = await (await conn.execute("SELECT count(*) FROM runs WHERE attempt > 1")).fetchone()
            resumed = cut[0]
    finally:
        postgres.remove()

    with capsys.disabled():
        print(
            f"\nPostgreSQL restart under load: {len(load.accepted)} runs accepted, ended {dict(ended)}; "
            f"{resumed} cut off mid-run and resumed; responses {dict(load.statuses)}; "
            f"serving again {recovered_s:.2f} s after PostgreSQL was back"
        )
    assert before > 0 and after_recovery > 0, "the load ran before and after the restart"
    assert load.statuses[503] > 0, "requests during the outage were told 503"
    assert set(load.statuses) <= {200, 503}, f"only 200 or 503, never a 500: {dict(load.statuses)}"
    assert load.missing_retry_after == 0, "every 503 says when to retry"
    assert load.hangs == 0, f"no request waited over {REQUEST_TIMEOUT_S} s"
    assert recovered_s < 5, f"serving again {recovered_s:.2f} s after PostgreSQL was back"
    assert ended == Counter({"success": len(load.accepted)}), f"every accepted run finished: {dict(ended)}"
    assert resumed > 0, "runs were running when PostgreSQL stopped, and finished on a later attempt"
    for thread_id, kinds in kept.items():  # each accepted turn kept once: its question, then its answer
        turns = sum(1 for t, _ in load.accepted if t == thread_id)
        assert kinds == ["human", "ai"] * turns, f"thread {thread_id}: {kinds}"


ROTTERDAM = b"""# Rotterdam warehouse

The Rotterdam warehouse stores 48000 pallets and opened in March 2019.
Trucks are loaded at dock 7 between six in the morning and ten at night.
"""
LYON = b"""# Lyon depot

The Lyon depot runs 14 electric forklifts and ships to Geneva every Tuesday.
Its cold room keeps medicines between two and eight degrees.
"""
OLD = b"""# Retired Porto office

The Porto office closed in 2021 and its archive moved to Rotterdam.
"""
ROTTERDAM_Q = "How many pallets does the Rotterdam warehouse store?"
LYON_Q = "How many electric forklifts does the Lyon depot run?"


async def answer(client: httpx.AsyncClient, thread_id: str, question: str) -> tuple[int, dict]:
    """(status, the answer's response_metadata) of one turn."""
    response = await client.post(f"/threads/{thread_id}/runs/wait", json=user(question), timeout=REQUEST_TIMEOUT_S)
    if response.status_code != 200:
        return response.status_code, {}
    return 200, response.json()["messages"][-1].get("response_metadata") or {}


def cited(metadata: dict) -> set[str]:
    return {c["source"] for c in metadata.get("citations", [])}


async def test_chroma_killed_under_load_answers_go_on_degraded_and_vectors_are_reconciled(tmp_path, databases, capsys):
    from tests.support.librarian import Librarian
    from tests.support.services import ChromaServer
    from tests.support.turns import new_kb, upload

    (tmp_path / "chroma").mkdir()
    chroma = ChromaServer(tmp_path / "chroma")
    chroma.start()
    try:
        async with serve_scripted(
            tmp_path / "app", databases.create(), chroma.url, delay=0, reply=Librarian(), index_reconcile_s="0.5"
        ) as served:
            client = served.client
            kb_id = await new_kb(client, "sites")
            for name, data in (("rotterdam.md", ROTTERDAM), ("porto.md", OLD)):
                assert (await upload(client, kb_id, name, data)).status_code == 201
            old_id = next(d["document_id"] for d in (await client.get(f"/knowledge-bases/{kb_id}/documents")).json()
                          if d["source"] == "porto.md")  # fmt: skip
            thread_id = await new_thread(client, knowledge_bases=[kb_id])
            status, whole = await answer(client, thread_id, ROTTERDAM_Q)
            assert status == 200 and cited(whole) == {"rotterdam.md"} and "degraded" not in whole

            # A steady load of questions on their own conversations, before, during and after.
            seen: Counter = Counter()
            stop = asyncio.Event()

            async def asking() -> None:
                conversation = await new_thread(client, knowledge_bases=[kb_id])
                while not stop.is_set():
                    status, metadata = await answer(client, conversation, ROTTERDAM_Q)
                    grounded = "rotterdam.md" in cited(metadata)
                    seen[(status, grounded, "degraded" in metadata)] += 1

            load = [asyncio.create_task(asking()) for _ in range(2)]
            await asyncio.sleep(1)
            chroma.kill()

            status, during = await answer(client, thread_id, ROTTERDAM_Q)
            assert status == 200 and cited(during) == {"rotterdam.md"}, during
            assert "lexical" in during["degraded"], during
            ready = await client.get("/readyz")
            assert ready.status_code == 200 and ready.json()["degraded"] is True, ready.text
            assert ready.json()["checks"]["chroma"]["ok"] is False
            search = await client.post(f"/knowledge-bases/{kb_id}/search", json={"query": ROTTERDAM_Q, "mode": "dense"})
            assert search.status_code == 200 and search.json()["degraded"], search.text
            assert search.json()["results"][0]["source"] == "rotterdam.md"

            # Written while Chroma is away: published for lexical search, its vectors owed.
            uploaded = await upload(client, kb_id, "lyon.md", LYON)
            assert uploaded.status_code == 201 and uploaded.json()["indexed"] is False, uploaded.text
            status, lyon = await answer(client, thread_id, LYON_Q)
            assert status == 200 and cited(lyon) == {"lyon.md"} and lyon["degraded"], lyon
            assert (await client.delete(f"/knowledge-bases/{kb_id}/documents/{old_id}")).status_code == 204
            await asyncio.sleep(1)

            await asyncio.to_thread(chroma.start)
            back = time.monotonic()
            while True:  # whole again: ready without degradation, every document indexed
                ready = (await client.get("/readyz")).json()
                documents = (await client.get(f"/knowledge-bases/{kb_id}/documents")).json()
                if not ready["degraded"] and all(d["indexed"] for d in documents):
                    break
                assert time.monotonic() - back < 30, (ready, documents)
                await asyncio.sleep(0.2)
            reconciled_s = time.monotonic() - back

            status, after = await answer(client, thread_id, LYON_Q)
            assert status == 200 and cited(after) == {"lyon.md"} and "degraded" not in after, after
            dense = await client.post(f"/knowledge-bases/{kb_id}/search", json={"query": LYON_Q, "mode": "dense"})
            assert dense.json()["degraded"] is None and dense.json()["results"][0]["source"] == "lyon.md"
            index = served.runtime.knowledge.ingestor.index
            leftover = await asyncio.to_thread(index.collection.get, where={"document_id": old_id})
            assert leftover["ids"] == [], "the vectors of the document deleted meanwhile are gone"
            await asyncio.sleep(1)
            stop.set()
            await asyncio.gather(*load)
    finally:
        chroma.stop()

    with capsys.disabled():
        print(f"\nChroma killed under load: answers {dict(seen)} as (status, grounded, degraded); "
              f"whole again {reconciled_s:.2f} s after Chroma was back")  # fmt: skip
    assert {status for status, _, _ in seen} == {200}, f"every question answered: {dict(seen)}"
    assert all(grounded for _, grounded, _ in seen), f"every answer cites its source: {dict(seen)}"
    assert seen[(200, True, True)] > 0 and seen[(200, True, False)] > 0, "answers seen degraded and whole"


async def test_a_full_data_disk_refuses_uploads_and_turns_cleanly_keeps_reads_and_recovers(tmp_path, capsys):
    from tests.support.services import ChromaServer, fill, small_disk

    cleanup = contextlib.ExitStack()
    try:
        disk = cleanup.enter_context(small_disk(160))
    except PermissionError as exc:
        pytest.skip(str(exc))
    # PostgreSQL's data files, Chroma's and the appliance's own on the small disk;
    # the WAL beside it (with the WAL on a full disk PostgreSQL stops: the 503 case above).
    postgres = PrivatePostgres(disk / "postgres", wal_apart=True)
    chroma = ChromaServer(tmp_path, data=disk / "chroma")
    try:
        postgres.start()
        chroma.start()
        async with serve_scripted(disk / "app", postgres.url, chroma.url, delay=0, index_reconcile_s="0.5") as served:
            client = served.client
            from tests.support.turns import new_kb, upload

            kb_id = await new_kb(client, "sites")
            assert (await upload(client, kb_id, "rotterdam.md", ROTTERDAM)).status_code == 201
            thread_id = await new_thread(client, knowledge_bases=[kb_id])
            first = await client.post(f"/threads/{thread_id}/runs/wait", json=user(ROTTERDAM_Q))
            assert first.status_code == 200, first.text
            state_before = (await client.get(f"/threads/{thread_id}/state")).json()
            documents_before = (await client.get(f"/knowledge-bases/{kb_id}/documents")).json()

            ballast = await asyncio.to_thread(fill, disk)
            big = b"# Lyon depot\n\n" + b"The Lyon depot runs 14 electric forklifts. " * 600
            refused_upload = await upload(client, kb_id, "lyon.md", big)
            refused_turn = await client.post(f"/threads/{thread_id}/runs/wait", json=user("One more question"))
            # Everything stored before reads back unchanged.
            reads = {
                "state": await client.get(f"/threads/{thread_id}/state"),
                "documents": await client.get(f"/knowledge-bases/{kb_id}/documents"),
                "search": await client.post(f"/knowledge-bases/{kb_id}/search", json={"query": ROTTERDAM_Q}),
                "history": await client.get(f"/threads/{thread_id}/history"),
            }
            thread_after = (await client.get(f"/threads/{thread_id}")).json()

            ballast.unlink()
            back = time.monotonic()
            recovered_upload = await upload(client, kb_id, "lyon.md", big)
            recovered_turn = await client.post(f"/threads/{thread_id}/runs/wait", json=user(LYON_Q))
            recovered_s = time.monotonic() - back
    finally:
        chroma.stop()
        postgres.remove()
        cleanup.close()

    with capsys.disabled():
        print(
            f"\nFull disk: upload {refused_upload.status_code}, turn {refused_turn.status_code}; "
            f"reads {[r.status_code for r in reads.values()]}; "
            f"after freeing space: upload {recovered_upload.status_code}, turn {recovered_turn.status_code} "
            f"in {recovered_s:.2f} s"
        )
    for refused in (refused_upload, refused_turn):
        assert refused.status_code == 507, refused.text[:500]
        assert "disk is full" in refused.json()["detail"]
    assert all(r.status_code == 200 for r in reads.values()), {k: r.text[:500] for k, r in reads.items()}
    # Nothing half-written: the turn left no trace, the refused document is not listed as usable.
    assert reads["state"].json() == state_before
    assert thread_after["status"] == "idle"
    usable = [d for d in reads["documents"].json() if d["status"] != "failed"]
    assert usable == documents_before, reads["documents"].json()
    assert reads["search"].json()["results"][0]["source"] == "rotterdam.md"
    assert recovered_upload.status_code == 201, recovered_upload.text[:500]
    assert recovered_turn.status_code == 200, recovered_turn.text[:500]
