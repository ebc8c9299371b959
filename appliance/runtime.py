"""Everything a running appliance holds, built and closed in one place.

The HTTP app's lifespan, the in-process chat, the CLI and the benchmarks all
open the same runtime, so they cannot drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from langgraph.graph.state import CompiledStateGraph
from psycopg_pool import AsyncConnectionPool

from appliance.agent.graph import build_graph, memory_policy
from appliance.agent.memory import MemoryPolicy
from appliance.llm.errors import ModelError
from appliance.llm.provider import LanguageModel, build_language_model
from appliance.observability import Metrics
from appliance.services.keys import KeyService
from appliance.services.runs import RunService
from appliance.services.threads import ThreadService
from appliance.settings import Settings
from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.database import EmbeddedPostgres, database_url, open_pool
from appliance.store.keys import KeyStore
from appliance.store.locks import ThreadLocks
from appliance.store.migrations import migrate
from appliance.store.threads import ThreadStore
from appliance.store.vectors import open_chroma

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    pool: AsyncConnectionPool
    embedded_postgres: EmbeddedPostgres | None
    checkpointer: PooledPostgresSaver
    model: LanguageModel
    policy: MemoryPolicy
    graph: CompiledStateGraph
    chroma: Any
    keys: KeyService
    threads: ThreadService
    runs: RunService
    metrics: Metrics


@asynccontextmanager
async def open_database(
    settings: Settings, *, wait_s: float = 30
) -> AsyncIterator[tuple[AsyncConnectionPool, EmbeddedPostgres | None]]:
    """The pool, with the schema migrated (the embedded server started first if needed)."""
    url, embedded = database_url(settings)
    pool = await open_pool(url, min_size=settings.db_pool_min_size, max_size=settings.db_pool_max_size, wait_s=wait_s)
    try:
        await migrate(pool)
        yield pool, embedded
    finally:
        await pool.close()
        if embedded is not None:
            embedded.release()


@asynccontextmanager
async def open_runtime(settings: Settings, *, model: LanguageModel | None = None) -> AsyncIterator[Runtime]:
    """Open the stores, load the model and build the agent. ``model`` replaces
    the configured provider (tests and benchmarks pass a scripted one)."""
    async with open_database(settings) as (pool, embedded):
        checkpointer = PooledPostgresSaver(pool)
        await checkpointer.setup()
        model = model or build_language_model(settings)
        try:
            log.info("model ready", extra={"detail": await model.check()})
        except ModelError as exc:
            # Serve anyway: /readyz reports it and runs answer with a clear error.
            log.error("model not ready: %s", exc.message)
        policy = memory_policy(settings, model)
        graph = build_graph(model, policy, checkpointer)
        thread_store, locks, metrics = ThreadStore(pool), ThreadLocks(pool), Metrics()
        await thread_store.reset_stale_busy()
        threads = ThreadService(thread_store, graph, checkpointer, locks)
        yield Runtime(
            settings=settings,
            pool=pool,
            embedded_postgres=embedded,
            checkpointer=checkpointer,
            model=model,
            policy=policy,
            graph=graph,
            chroma=open_chroma(settings),
            keys=KeyService(KeyStore(pool)),
            threads=threads,
            runs=RunService(graph, checkpointer, threads, locks, policy, metrics),
            metrics=metrics,
        )
