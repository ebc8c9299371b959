"""Request and response shapes, after LangGraph's Agent Server where it has one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

Metadata = dict[str, Any]
Limit = Annotated[int, Meta(ge=1, le=1000)]
# PostgreSQL's OFFSET is a bigint; a larger one is the caller's mistake, not ours.
MAX_OFFSET = 2**63 - 1
Offset = Annotated[int, Meta(ge=0, le=MAX_OFFSET)]


class ErrorBody(msgspec.Struct):
    status_code: int
    detail: str
    error: str | None = None


# Threads ------------------------------------------------------------------


class ThreadCreate(msgspec.Struct, forbid_unknown_fields=True):
    thread_id: uuid.UUID | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"


class ThreadPatch(msgspec.Struct, forbid_unknown_fields=True):
    metadata: Metadata


class ThreadSearch(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[uuid.UUID] | None = None
    metadata: Metadata | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] = "updated_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[str] | None = None


class Thread(msgspec.Struct):
    thread_id: uuid.UUID
    created_at: datetime
    updated_at: datetime
    metadata: Metadata
    status: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    values: dict[str, Any] | None = None
    interrupts: dict[str, Any] = msgspec.field(default_factory=dict)


class CheckpointRef(msgspec.Struct):
    checkpoint_id: str
    thread_id: str | None = None
    checkpoint_ns: str = ""


class HistoryQuery(msgspec.Struct, forbid_unknown_fields=True):
    limit: Limit = 10
    before: CheckpointRef | None = None
    metadata: Metadata | None = None
    checkpoint: CheckpointRef | None = None


class ThreadState(msgspec.Struct):
    values: dict[str, Any]
    next: list[str]
    tasks: list[dict[str, Any]]
    checkpoint: dict[str, Any] | None
    metadata: dict[str, Any]
    created_at: str | None
    parent_checkpoint: dict[str, Any] | None
    interrupts: list[dict[str, Any]]


# Runs ---------------------------------------------------------------------


class RunConfig(msgspec.Struct, forbid_unknown_fields=True):
    tags: list[str] = msgspec.field(default_factory=list)
    recursion_limit: Annotated[int, Meta(ge=1, le=1000)] | None = None
    configurable: dict[str, Any] = msgspec.field(default_factory=dict)


class RunCreate(msgspec.Struct, forbid_unknown_fields=True):
    assistant_id: str
    input: Any = None
    command: dict[str, Any] | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    config: RunConfig = msgspec.field(default_factory=RunConfig)
    context: dict[str, Any] | None = None
    stream_mode: str | list[str] = "values"
    stream_subgraphs: bool = False  # the agent has no subgraphs
    stream_resumable: bool = False  # every run's stream is kept, resumable or not
    on_disconnect: Literal["cancel", "continue"] = "cancel"
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_completion: Literal["delete", "keep"] = "delete"
    # Runs always checkpoint every step, durably: these change nothing.
    checkpoint_during: bool | None = None
    durability: Literal["sync", "async", "exit"] | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    webhook: Annotated[str, Meta(max_length=2000)] | None = None
    interrupt_before: str | list[str] | None = None
    interrupt_after: str | list[str] | None = None
    after_seconds: Annotated[float, Meta(ge=0, le=86_400)] | None = None
    feedback_keys: list[str] | None = None
    strict_resume: bool | None = None
    langsmith_tracer: dict[str, Any] | None = None


class Run(msgspec.Struct):
    run_id: uuid.UUID
    thread_id: uuid.UUID
    assistant_id: str
    created_at: datetime
    updated_at: datetime
    status: Literal["pending", "running", "error", "success", "timeout", "interrupted"]
    metadata: Metadata
    kwargs: dict[str, Any]
    multitask_strategy: str


class ThreadStateUpdate(msgspec.Struct, forbid_unknown_fields=True):
    values: dict[str, Any] | list[Any] | None = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    as_node: str | None = None


class ThreadStateUpdated(msgspec.Struct):
    checkpoint: dict[str, Any]


class AssistantSearch(msgspec.Struct, forbid_unknown_fields=True):
    graph_id: str | None = None
    name: str | None = None
    metadata: Metadata | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: str | None = None
    sort_order: Literal["asc", "desc"] | None = None
    select: list[str] | None = None


# Knowledge bases ----------------------------------------------------------


class KnowledgeBaseCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    description: Annotated[str, Meta(max_length=2000)] = ""
    metadata: Metadata = msgspec.field(default_factory=dict)


class KnowledgeBase(msgspec.Struct):
    knowledge_base_id: uuid.UUID
    name: str
    description: str
    metadata: Metadata
    created_at: datetime
    updated_at: datetime


class Document(msgspec.Struct):
    document_id: uuid.UUID
    knowledge_base_id: uuid.UUID
    source: str
    title: str
    media_type: str
    content_hash: str
    size_bytes: int
    pages: int | None
    chunk_count: int
    status: Literal["processing", "ready", "failed"]
    error: str | None
    created_at: datetime
    updated_at: datetime
    # On upload: what the upload did (an unchanged file is not ingested again).
    outcome: Literal["created", "replaced", "unchanged"] | None = None


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True):
    query: Annotated[str, Meta(min_length=1, max_length=4000)]
    k: Annotated[int, Meta(ge=1, le=50)] | None = None
    document_ids: list[uuid.UUID] | None = None
    sources: list[str] | None = None
    mode: Literal["hybrid", "dense", "lexical"] = "hybrid"


class SearchResult(msgspec.Struct):
    document_id: uuid.UUID
    source: str
    page: int | None
    heading: str
    text: str
    score: float
    title: str
    chunk_id: str
    similarity: float


class SearchResponse(msgspec.Struct):
    results: list[SearchResult]


# API keys -----------------------------------------------------------------


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    tenant: str
    name: str = ""
    admin: bool = False


class KeyInfo(msgspec.Struct):
    key_id: uuid.UUID
    tenant: str
    name: str
    prefix: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


class KeyCreated(msgspec.Struct):
    key: str
    info: KeyInfo


# Health -------------------------------------------------------------------


class Ok(msgspec.Struct):
    ok: bool = True


class Check(msgspec.Struct):
    ok: bool
    detail: str


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, Check]
