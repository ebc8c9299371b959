"""A small synchronous client for an appliance on a droplet (the controller's view)."""

from __future__ import annotations

import time
from typing import Any

import httpx


class ApplianceClient(httpx.Client):
    def __init__(self, url: str, key: str) -> None:
        super().__init__(base_url=url, headers={"x-api-key": key}, timeout=600, trust_env=False)

    def create_knowledge_base(self, name: str, filename: str, data: bytes) -> str:
        created = self.post("/knowledge-bases", json={"name": name})
        assert created.status_code == 201, created.text
        kb_id = created.json()["knowledge_base_id"]
        uploaded = self.post(f"/knowledge-bases/{kb_id}/documents", files={"file": (filename, data)})
        assert uploaded.status_code == 201, uploaded.text
        return kb_id

    def create_thread(self, **metadata: Any) -> str:
        created = self.post("/threads", json={"metadata": metadata})
        assert created.status_code == 200, created.text
        return created.json()["thread_id"]

    def ask(self, thread_id: str, text: str) -> dict[str, Any]:
        body = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": text}]}}
        answered = self.post(f"/threads/{thread_id}/runs/wait", json=body)
        assert answered.status_code == 200, answered.text
        return answered.json()


def wait_ready(client: httpx.Client, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get("/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{client.base_url} was not ready within {timeout:.0f} s")
        time.sleep(2)
