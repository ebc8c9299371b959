"""A small synchronous client for an appliance on a droplet (the controller's view),
over HTTPS, trusting the local CA the playbook made beside the inventory."""

from __future__ import annotations

import ssl
import time
from pathlib import Path
from typing import Any

import httpx


def local_ca(inventory: Path) -> Path:
    """The certificate users are handed: the playbook's local CA, kept beside the inventory."""
    return inventory.parent / "credentials" / "tls" / "ca.crt"


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


class ApplianceClient(httpx.Client):
    def __init__(self, url: str, key: str, ca: Path) -> None:
        super().__init__(base_url=url, headers={"x-api-key": key}, timeout=600, trust_env=False, verify=trusting(ca))

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
