"""Small helpers for driving the API the way a client does."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import openai

from appliance.cli.remote import read_events


def user(text: str) -> dict[str, Any]:
    return {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": text}]}}


async def new_thread(client: httpx.AsyncClient, **metadata: Any) -> str:
    response = await client.post("/threads", json={"metadata": metadata})
    assert response.status_code == 200, response.text
    return response.json()["thread_id"]


async def turn(client: httpx.AsyncClient, thread_id: str, text: str, **extra: Any) -> dict[str, Any]:
    response = await client.post(f"/threads/{thread_id}/runs/wait", json=user(text) | extra)
    assert response.status_code == 200, response.text
    return response.json()


async def stream(client: httpx.AsyncClient, thread_id: str, body: dict[str, Any]) -> list[tuple[str, Any]]:
    """(event, data) pairs of one SSE response."""
    async with client.stream("POST", f"/threads/{thread_id}/runs/stream", json=body) as response:
        assert response.status_code == 200, (await response.aread()).decode()
        return [pair async for pair in read_events(response.aiter_lines())]


async def checkpoint_count(runtime, thread_id: str) -> int:
    async with runtime.pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", (thread_id,))
        ).fetchone()
    return row["n"]


async def new_kb(client: httpx.AsyncClient, name: str | None = None) -> str:
    response = await client.post("/knowledge-bases", json={"name": name or f"kb-{uuid.uuid4().hex[:8]}"})
    assert response.status_code == 201, response.text
    return response.json()["knowledge_base_id"]


async def upload(client: httpx.AsyncClient, kb_id: str, name: str, data: bytes) -> httpx.Response:
    return await client.post(f"/knowledge-bases/{kb_id}/documents", files={"file": (name, data)})


def openai_client(app, key: str) -> openai.AsyncOpenAI:
    """OpenAI's own client, pointed at the appliance's /v1 with ``key``."""
    return openai.AsyncOpenAI(
        base_url=f"{app.url}/v1", api_key=key, max_retries=0, http_client=httpx.AsyncClient(trust_env=False)
    )


async def writes_by_node(runtime, thread_id: str) -> list[dict[str, set[str]]]:
    """The channels each node wrote, run by run."""
    async with runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                """SELECT c.metadata->>'run_id' AS run_id, w.task_path, w.channel
                   FROM checkpoints c JOIN checkpoint_writes w USING (thread_id, checkpoint_ns, checkpoint_id)
                   WHERE c.thread_id = %s ORDER BY c.checkpoint_id, w.idx""",
                (thread_id,),
            )
        ).fetchall()
    runs: dict[str, dict[str, set[str]]] = {}
    for row in rows:  # task_path: "~__pregel_pull, respond"
        node = row["task_path"].rsplit(", ", 1)[-1]
        runs.setdefault(row["run_id"], {}).setdefault(node, set()).add(row["channel"])
    return list(runs.values())
