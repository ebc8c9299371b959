"""Request and response shapes, after LangGraph's Agent Server where it has one."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, get_type_hints

import msgspec
from msgspec import Meta

from appliance.agent.context import schema as assistant_context_schema
from appliance.agent.graph import NODES
from appliance.agent.state import AgentState
from appliance.engine.jsonable import STORABLE_INT_MAX, STORABLE_INT_MIN
from appliance.engine.request import Durability
from appliance.services.keys import TENANT_PATTERN
from appliance.services.runs import CLIENT_ROLES, STREAM_MODES
from appliance.services.threads import ARCHIVE_KEYS
from appliance.store.limits import LimitSet

Metadata = dict[str, Any]
Limit = Annotated[int, Meta(ge=1, le=1000)]
# PostgreSQL's OFFSET is a bigint; bounded further to the largest integer a
# JSON number holds exactly, so clients and the description agree on it.
MAX_OFFSET = 2**53 - 1
Offset = Annotated[int, Meta(ge=0, le=MAX_OFFSET)]


def rule(description: str | None = None, **schema: Any) -> Meta:
    """A rule a service checks (answering 422 with a message that names the
    field), stated in the API description so a client knows it beforehand.
    (As allOf: msgspec writes a union's own anyOf over an extra one.)"""
    extra: dict[str, Any] = {"allOf": [schema]}
    if description:
        extra["description"] = description
    return Meta(extra_json_schema=extra)


def one_or_many(*names: str) -> dict[str, Any]:
    return {"anyOf": [{"enum": list(names)}, {"type": "array", "items": {"enum": list(names)}}, {"type": "null"}]}


NOT_USED = rule(description="not used offline; leave it out or send it empty", maxProperties=0, maxItems=0)
TEXT = {"type": "string", "pattern": r"\S"}
MESSAGE = {
    "type": "object",
    "required": ["content"],
    # A role, or a type as LangChain names it (either may be null when the other is set).
    "anyOf": [
        {"required": ["role"], "properties": {"role": {"enum": sorted(CLIENT_ROLES)}}},
        {"required": ["type"], "properties": {"type": {"enum": sorted(CLIENT_ROLES)}}},
    ],
    "additionalProperties": False,
    "properties": {
        "role": {"enum": [*sorted(CLIENT_ROLES), None]},
        "type": {"enum": [*sorted(CLIENT_ROLES), None]},
        "content": TEXT,
        "id": {"type": ["string", "null"]},
        "name": {"type": ["string", "null"]},
    },
}


STORABLE_INT = {"type": "integer", "minimum": STORABLE_INT_MIN, "maximum": STORABLE_INT_MAX}
# Any JSON value a checkpoint can hold (its integers fit in 64 bits); a component
# of the description, as it refers to itself.
STORABLE_VALUE = {
    "description": "any JSON value whose integers fit in 64 bits",
    "anyOf": [
        {"type": ["null", "boolean", "string"]},
        STORABLE_INT,
        {"type": "number", "not": {"type": "integer"}},
        {"type": "array", "items": {"$ref": "#/components/schemas/StorableValue"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/StorableValue"}},
    ],
}
STORABLE = {"$ref": "#/components/schemas/StorableValue"}


def _storable(schema: Any) -> Any:
    """msgspec's schema of a state value, with free-form parts held to STORABLE_VALUE."""
    if isinstance(schema, list):
        return [_storable(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    if schema == {"type": "object"}:
        return {"type": "object", "additionalProperties": STORABLE}
    if schema == {"type": "integer"}:
        return STORABLE_INT
    return {key: _storable(value) for key, value in schema.items()}


def _state_values() -> dict[str, Any]:
    """The agent's state as values a client may write: each key with its type
    (not the archive's place, which only a fold moves)."""
    properties = {
        key: {"type": "array", "items": MESSAGE} if key == "messages" else _storable(msgspec.json.schema(hint))
        for key, hint in get_type_hints(AgentState).items()
        if key not in ARCHIVE_KEYS
    }
    return {"type": "object", "additionalProperties": False, "properties": properties}


STATE_VALUES = _state_values()
RUN_INPUT = rule(
    anyOf=[
        {"type": "null"},
        {
            "type": "object",
            "required": ["messages"],
            "additionalProperties": False,
            "properties": {
                "messages": {
                    "type": "array",
                    "minItems": 1,
                    "items": MESSAGE,
                }
            },
        },
    ],
    description="the new message(s) of the turn; the system prompt is the administrator's",
)
RUN_COMMAND = rule(
    anyOf=[
        {"type": "null"},
        {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": False,
            "properties": {
                "resume": STORABLE,
                "update": {"anyOf": [{"type": "null"}, STATE_VALUES]},
                # One node: every node writes this turn's keys, so two at once would collide.
                "goto": {
                    "anyOf": [
                        {"enum": list(NODES)},
                        {"type": "array", "items": {"enum": list(NODES)}, "maxItems": 1},
                        {"type": "null"},
                    ]
                },  # fmt: skip
            },
        },
    ],
    description="resume a paused run; send input or command, not both",
)


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


ThreadField = Literal[
    "thread_id", "created_at", "updated_at", "metadata", "config", "context", "status", "values", "interrupts"
]


class ThreadSearch(msgspec.Struct, forbid_unknown_fields=True):
    ids: list[uuid.UUID] | None = None
    metadata: Metadata | None = None
    status: Literal["idle", "busy", "interrupted", "error"] | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: Literal["thread_id", "status", "created_at", "updated_at"] = "updated_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[ThreadField] | None = None


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


ASSISTANT_CONTEXT = rule(
    description="What the assistant sets of the agent's context (GET /assistants/{id}/schemas: context_schema); "
    "the rest is the appliance's default",
    **(assistant_context_schema() | {"additionalProperties": False}),
)


class AssistantConfig(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    # Assistant settings as in context (context wins where both set one).
    configurable: Annotated[dict[str, Any], ASSISTANT_CONTEXT] = msgspec.field(default_factory=dict)
    tags: list[Annotated[str, Meta(max_length=200)]] = msgspec.field(default_factory=list)
    recursion_limit: Annotated[int, Meta(ge=1, le=1000)] | None = None


# Runs ---------------------------------------------------------------------


DURABILITY = Meta(
    description=(
        "When the run's checkpoints are written. sync (the default here): each step's before the next "
        "begins, so a run cut off goes on from its last step. async: while the next step runs (a run "
        "cut off may redo a step). exit: only the turn's last, one a turn instead of one a step: the "
        "lightest, and a run cut off starts its turn again"
    )
)


class RunConfig(msgspec.Struct, forbid_unknown_fields=True):
    tags: list[str] = msgspec.field(default_factory=list)
    recursion_limit: Annotated[int, Meta(ge=1, le=1000)] | None = None
    configurable: dict[str, Any] = msgspec.field(default_factory=dict)


class RunCreate(msgspec.Struct, forbid_unknown_fields=True):
    # The assistant's id or name; none: the thread's (metadata.assistant_id), else the built-in "agent".
    assistant_id: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    input: Annotated[Any, RUN_INPUT] = None
    command: Annotated[dict[str, Any] | None, RUN_COMMAND] = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    config: RunConfig = msgspec.field(default_factory=RunConfig)
    context: Annotated[dict[str, Any], ASSISTANT_CONTEXT] | None = None
    # None: "values" for a run a stream may follow; nothing for one its caller waits for.
    stream_mode: Annotated[str | list[str] | None, rule(**one_or_many(*STREAM_MODES))] = None
    stream_subgraphs: bool = False  # the agent has no subgraphs
    stream_resumable: bool = False  # every run's stream is kept, resumable or not
    on_disconnect: Literal["cancel", "continue"] = "cancel"
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_completion: Literal["delete", "keep"] = "delete"
    # Replaced by durability in the Agent Server; changes nothing here.
    checkpoint_during: bool | None = None
    durability: Annotated[Durability | None, DURABILITY] = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: Annotated[str | None, Meta(description="the checkpoint to run from; over checkpoint")] = None
    webhook: (
        Annotated[
            str,
            Meta(
                max_length=2000,
                pattern="^https?://",
                description="called when the run ends; it must resolve inside APPLIANCE_WEBHOOK_ALLOWED_NETWORKS",
            ),
        ]
        | None
    ) = None
    interrupt_before: Annotated[str | list[str] | None, rule(**one_or_many("*", *NODES))] = None
    interrupt_after: Annotated[str | list[str] | None, rule(**one_or_many("*", *NODES))] = None
    after_seconds: Annotated[float, Meta(ge=0, le=86_400)] | None = None
    feedback_keys: Annotated[list[str] | None, NOT_USED] = None
    strict_resume: bool | None = None
    langsmith_tracer: Annotated[dict[str, Any] | None, NOT_USED] = None


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
    values: Annotated[dict[str, Any] | list[Any] | None, rule(anyOf=[{"type": "null"}, STATE_VALUES])] = None
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    as_node: Annotated[str | None, rule(anyOf=[{"type": "null"}, {"enum": list(NODES)}])] = None


class ThreadStateUpdated(msgspec.Struct):
    checkpoint: dict[str, Any]


# Assistants ----------------------------------------------------------------

AssistantName = Annotated[str, Meta(min_length=1, max_length=100, pattern=r"\S")]
Description = Annotated[str, Meta(max_length=2000)]
AssistantSortBy = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]


class AssistantCreate(msgspec.Struct, forbid_unknown_fields=True):
    graph_id: Literal["agent"]  # the appliance's one graph
    assistant_id: uuid.UUID | None = None
    name: AssistantName | None = None
    description: Description | None = None
    metadata: Metadata = msgspec.field(default_factory=dict)
    config: AssistantConfig = msgspec.field(default_factory=AssistantConfig)
    context: Annotated[dict[str, Any], ASSISTANT_CONTEXT] = msgspec.field(default_factory=dict)
    if_exists: Literal["raise", "do_nothing"] = "raise"


class AssistantPatch(msgspec.Struct, forbid_unknown_fields=True):
    graph_id: Literal["agent"] | None = None
    name: AssistantName | None = None
    description: Description | None = None
    metadata: Metadata | None = None
    config: AssistantConfig | None = None
    context: Annotated[dict[str, Any], ASSISTANT_CONTEXT] | None = None


class AssistantSearch(msgspec.Struct, forbid_unknown_fields=True):
    graph_id: str | None = None
    name: str | None = None
    metadata: Metadata | None = None
    limit: Limit = 10
    offset: Offset = 0
    sort_by: AssistantSortBy = "created_at"
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[str] | None = None


class AssistantCount(msgspec.Struct, forbid_unknown_fields=True):
    graph_id: str | None = None
    name: str | None = None
    metadata: Metadata | None = None


class AssistantVersionChange(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, Meta(ge=1, le=2**31 - 1)]


class AssistantVersionsSearch(msgspec.Struct, forbid_unknown_fields=True):
    metadata: Metadata | None = None
    limit: Limit = 10
    offset: Offset = 0


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
    # False while the vector index (Chroma) lacks this version: published while
    # Chroma was unreachable, found by lexical search, indexed when Chroma is back.
    indexed: bool
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
    # Why the search was less than asked for (the vector index unavailable:
    # lexical results alone), or null.
    degraded: str | None = None


# API keys -----------------------------------------------------------------


class KeyCreate(msgspec.Struct, forbid_unknown_fields=True):
    tenant: Annotated[str, rule(pattern=TENANT_PATTERN)]
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


# Tool servers (admins) -------------------------------------------------------

ToolName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9_.-]{1,100}$")]


class ToolServerCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """An MCP server on the local network, reached over Streamable HTTP."""

    name: Annotated[
        str,
        Meta(pattern=r"^[A-Za-z0-9_.-]{1,100}$", description="How assistants name its tools: name/tool"),
    ]
    url: Annotated[
        str,
        Meta(
            max_length=2000,
            pattern="^https?://",
            description="Its MCP endpoint: an http or https URL (the path is often /mcp) that resolves inside "
            "APPLIANCE_TOOL_ALLOWED_NETWORKS",
        ),
    ]
    headers: Annotated[
        dict[Annotated[str, Meta(pattern=r"^[A-Za-z0-9-]{1,100}$")], Annotated[str, Meta(max_length=4000)]],
        Meta(max_length=20, description="Sent with every request (a token, say); stored, never shown again"),
    ] = msgspec.field(default_factory=dict)
    allowed_tools: Annotated[
        list[ToolName] | None,
        Meta(description="The tools runs may call; null (the default): every tool it lists"),
    ] = None
    requires_approval: Annotated[
        list[ToolName], Meta(max_length=200, description="Tools a person approves, edits or rejects before each call")
    ] = msgspec.field(default_factory=list)
    idempotent: Annotated[
        list[ToolName],
        Meta(max_length=200, description="Tools safe to call again when a crash left a call's outcome unknown"),
    ] = msgspec.field(default_factory=list)
    tenants: Annotated[
        list[Annotated[str, Meta(pattern=r"^(\*|[A-Za-z0-9._-]{1,64})$")]],
        Meta(max_length=1000, description='Tenants whose keys may use its tools; ["*"]: every tenant'),
    ] = msgspec.field(default_factory=lambda: ["*"])


# Tenants' rate limits and the audit log (admins) ----------------------------

LimitValue = Annotated[int, Meta(ge=0, le=1_000_000, description="0: no limit")]


class LimitsUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """The tenant's own limits; a limit left out (or null) takes the appliance's setting."""

    key_requests_per_minute: LimitValue | None = None
    tenant_requests_per_minute: LimitValue | None = None
    key_runs_in_flight: LimitValue | None = None
    tenant_runs_in_flight: LimitValue | None = None
    key_uploads_in_flight: LimitValue | None = None
    tenant_uploads_in_flight: LimitValue | None = None


class TenantLimits(msgspec.Struct):
    tenant: str
    limits: LimitSet  # in force
    # The limits this tenant has of its own; the others are the appliance's settings.
    own: dict[str, int]


# Health -------------------------------------------------------------------


class Ok(msgspec.Struct):
    ok: bool = True


class Check(msgspec.Struct):
    ok: bool
    detail: str


class Readiness(msgspec.Struct):
    # Serving: PostgreSQL and the model answer. Without Chroma the appliance
    # still serves, from the lexical index: ready, but degraded.
    ready: bool
    checks: dict[str, Check]
    degraded: bool = False
