"""Everything a running appliance holds, built and closed in one place.

The HTTP app's lifespan, the in-process chat, the CLI and the benchmarks all
open the same runtime, so they cannot drift apart.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from langgraph.graph.state import CompiledStateGraph
from psycopg_pool import AsyncConnectionPool

from appliance.agent.context import built_in_context
from appliance.agent.graph import build_graph, memory_policy
from appliance.agent.memory import MemoryPolicy
from appliance.agent.state import STORED_APART
from appliance.engine.events import EventLog
from appliance.engine.execution import RunExecutor
from appliance.engine.webhooks import Webhooks
from appliance.engine.worker import Worker
from appliance.knowledge.embeddings import Embedder, load_embedder
from appliance.knowledge.ingest import Ingestor
from appliance.knowledge.retrieval import Retriever
from appliance.llm.catalog import ModelCatalog, catalog_for
from appliance.llm.errors import ModelError
from appliance.llm.gate import ModelGate
from appliance.llm.provider import LanguageModel, build_language_model
from appliance.observability import Metrics
from appliance.pacing import Lane
from appliance.services.assistants import AssistantService
from appliance.services.embeddings import EmbeddingService
from appliance.services.keys import KeyService
from appliance.services.knowledge import KnowledgeService
from appliance.services.limits import Limits, defaults_from
from appliance.services.openai_chat import OpenAIChatService
from appliance.services.runs import RunService
from appliance.services.threads import ThreadService
from appliance.services.tool_servers import ToolServerService
from appliance.settings import Settings, ipaddress_networks
from appliance.store.archive import MessageArchive
from appliance.store.assistants import AssistantStore
from appliance.store.audit import AuditStore
from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.database import EmbeddedPostgres, database_in_use, open_pool
from appliance.store.keys import KeyStore
from appliance.store.knowledge import KnowledgeStore
from appliance.store.limits import LimitStore
from appliance.store.migrations import migrate
from appliance.store.runs import RunStore
from appliance.store.state_renderings import StateRenderings
from appliance.store.threads import ThreadStore
from appliance.store.tool_calls import ToolCallLedger
from appliance.store.tool_servers import ToolServerStore
from appliance.store.vectors import ChunkIndex, open_chroma
from appliance.tools.mcp_client import McpClient
from appliance.tools.toolbox import Toolbox

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
    keys: KeyService
    threads: ThreadService
    knowledge: KnowledgeService
    runs: RunService
    openai: OpenAIChatService
    worker: Worker
    metrics: Metrics
    limits: Limits
    audit: AuditStore
    assistants: AssistantService
    models: ModelCatalog
    embeddings: EmbeddingService
    tool_servers: ToolServerService
    lane: Lane


@asynccontextmanager
async def open_database(
    settings: Settings, *, wait_s: float = 30
) -> AsyncIterator[tuple[AsyncConnectionPool, EmbeddedPostgres | None]]:
    """The pool, with the schema migrated (the embedded server started first if needed)."""
    with database_in_use(settings) as (url, embedded):
        pool = await open_pool(
            url,
            min_size=settings.db_pool_min_size,
            max_size=settings.db_pool_max_size,
            wait_s=wait_s,
            timeout_s=settings.db_pool_timeout_s,
            queue_s=settings.db_pool_queue_s,
        )
        try:
            await migrate(pool)
            yield pool, embedded
        finally:
            await pool.close()


async def open_knowledge(
    settings: Settings, pool: AsyncConnectionPool, embedder: Embedder | None = None
) -> KnowledgeService:
    """The knowledge bases over the pool and Chroma, with what a crash left behind swept away."""
    store = KnowledgeStore(pool)
    index = ChunkIndex(open_chroma(settings), settings.chroma_collection)
    embedder = embedder or await asyncio.to_thread(load_embedder, settings)
    ingestor = Ingestor(
        store,
        index,
        embedder,
        chunk_words=settings.chunk_words,
        overlap_words=settings.chunk_overlap_words,
        max_bytes=settings.max_document_bytes,
    )
    await ingestor.sweep()
    return KnowledgeService(store, ingestor, Retriever(store, index, embedder, floor=settings.relevance_floor))


@asynccontextmanager
async def open_runtime(
    settings: Settings, *, model: LanguageModel | None = None, embedder: Embedder | None = None
) -> AsyncIterator[Runtime]:
    """Open the stores, load the models and build the agent. ``model`` replaces
    the configured chat model (tests and benchmarks pass a scripted one);
    ``embedder`` an already loaded embedding model (tests share one)."""
    async with open_database(settings) as (pool, embedded):
        checkpointer = PooledPostgresSaver(pool)
        await checkpointer.setup()
        model = model or build_language_model(settings)
        # model_concurrency calls at once on each server the model is served from.
        servers = len(model.servers()) if model.servers else 1
        model = dataclasses.replace(model, gate=ModelGate(settings.model_concurrency * servers))
        try:
            log.info("model ready", extra={"detail": await model.check()})
        except ModelError as exc:
            # Serve anyway: /readyz reports it and runs answer with a clear error.
            log.error("model not ready: %s", exc.message)
        policy = memory_policy(settings, model)
        knowledge = await open_knowledge(settings, pool, embedder)
        models, defaults = catalog_for(settings, model), built_in_context(settings)
        toolbox = open_toolbox(settings, pool, knowledge.retriever)
        archive = MessageArchive(pool, checkpointer.serde)
        graph = build_graph(
            models,
            policy,
            checkpointer,
            defaults=defaults,
            retriever=knowledge.retriever,
            toolbox=toolbox,
            archive=archive,
        )
        checkpointer.keep_windows(graph.channels)
        checkpointer.store_apart(STORED_APART)
        assistants = AssistantService(AssistantStore(pool), knowledge, models, defaults, toolbox)
        thread_store, run_store, metrics = ThreadStore(pool), RunStore(pool), Metrics()
        metrics.watch_database_pool(pool.get_stats)
        if model.servers is not None:
            metrics.watch_model_servers(model.servers)
        threads = ThreadService(thread_store, graph, checkpointer, run_store, archive, StateRenderings(pool))
        limits = Limits(LimitStore(pool), defaults_from(settings))
        reconciling = asyncio.create_task(
            knowledge.ingestor.keep_reconciling(settings.index_reconcile_s), name="index-reconcile"
        )
        pruning = asyncio.create_task(limits.keep_pruning(), name="rate-limit-prune")
        lane = Lane(settings.turn_lane_width)
        metrics.watch_turn_lane(lane.counts)
        async with (
            _closed_at_exit(toolbox.client),  # open MCP sessions, once no run can use them
            _cancelled_at_exit(reconciling),
            _cancelled_at_exit(pruning),
            open_engine(settings, pool, graph, checkpointer, run_store, metrics, lane) as (worker, webhooks),
        ):
            await thread_store.reset_stale_busy()
            runs = RunService(
                graph, run_store, worker.events, worker, threads, policy, knowledge, assistants, webhooks, limits
            )
            yield Runtime(
                settings=settings,
                pool=pool,
                embedded_postgres=embedded,
                checkpointer=checkpointer,
                model=model,
                policy=policy,
                graph=graph,
                keys=KeyService(KeyStore(pool)),
                threads=threads,
                knowledge=knowledge,
                runs=runs,
                openai=OpenAIChatService(runs, threads, assistants),
                assistants=assistants,
                models=models,
                embeddings=EmbeddingService(knowledge.retriever.embedder),
                worker=worker,
                metrics=metrics,
                limits=limits,
                audit=AuditStore(pool),
                tool_servers=ToolServerService(toolbox.servers, toolbox),
                lane=lane,
            )


def open_toolbox(settings: Settings, pool: AsyncConnectionPool, retriever: Retriever | None) -> Toolbox:
    """The tools runs may call: the built-in ones and the registered MCP servers'."""
    return Toolbox(
        ToolServerStore(pool),
        ToolCallLedger(pool),
        McpClient(ipaddress_networks(settings.tool_allowed_networks)),
        retriever,
        call_timeout_s=settings.tool_call_timeout_s,
        list_timeout_s=settings.tool_list_timeout_s,
    )


@asynccontextmanager
async def _closed_at_exit(closable) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await closable.close()


@asynccontextmanager
async def _cancelled_at_exit(task: asyncio.Task) -> AsyncIterator[None]:
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


@asynccontextmanager
async def open_engine(
    settings: Settings,
    pool: AsyncConnectionPool,
    graph: CompiledStateGraph,
    checkpointer: PooledPostgresSaver,
    store: RunStore,
    metrics: Metrics,
    lane: Lane,
) -> AsyncIterator[tuple[Worker, Webhooks]]:
    """The run engine: the event log, webhooks, and this process's worker."""
    events = EventLog(store)
    webhooks = Webhooks(
        ipaddress_networks(settings.webhook_allowed_networks),
        attempts=settings.webhook_attempts,
        backoff_s=settings.webhook_backoff_s,
    )
    executor = RunExecutor(
        graph, checkpointer, store, events, webhooks, metrics, lane, max_attempts=settings.run_max_attempts
    )
    worker = Worker(
        store,
        events,
        pool.conninfo,
        executor,
        slots=settings.worker_slots,
        heartbeat_s=settings.worker_heartbeat_s,
        dead_after_s=settings.worker_dead_after_s,
        event_retention_s=settings.run_event_retention_s,
    )
    events.start()
    await worker.start()
    try:
        yield worker, webhooks
    finally:
        await worker.stop()
        await events.stop()
        await webhooks.close()
