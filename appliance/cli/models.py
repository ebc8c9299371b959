"""``appliance models verify``"""

from __future__ import annotations

import asyncio

from appliance.manifest import Check, load_manifest, verify_files, verify_ollama
from appliance.settings import Settings


def print_checks(checks: list[Check]) -> bool:
    for check in checks:
        mark = "ok  " if check.ok else "FAIL"
        print(f"{mark} {check.model:<16} {check.target}: {check.detail}")
    return all(c.ok for c in checks)


def verify(settings: Settings) -> int:
    manifest = load_manifest(settings.manifest_path)
    checks = verify_files(manifest)
    for url in settings.ollama_servers:  # every server must hold the pinned model
        from appliance.llm.ollama import ollama_tags

        try:
            tags = asyncio.run(ollama_tags(url, settings.ollama_connect_timeout_s))
        except Exception as exc:
            checks.append(Check("chat.production", url, False, f"cannot list models: {exc}"))
        else:
            checks.append(verify_ollama(manifest.chat.production, tags, url))
    if not settings.ollama_servers:
        checks.append(verify_ollama(manifest.chat.production, None, None))
    return 0 if print_checks(checks) else 1
