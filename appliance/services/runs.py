"""Runs as a tenant sees them: create (on a thread or stateless), follow,
join, wait, cancel, list and delete.

A run is checked and queued before the caller gets an answer (so ``reject``
can say 409 and bad input 422 up front); a worker, in this process or
another, executes it (appliance/engine).
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import msgspec
from langchain_core.messages import convert_to_messages
from langgraph.graph.state import CompiledStateGraph

from appliance.agent.context import AssistantContext
from appliance.agent.graph import GRAPH_ID
from appliance.agent.memory import MemoryPolicy
from appliance.engine.events import Event, EventLog, Position
from appliance.engine.jsonable import jsonable, oversized_int, stream_json
from appliance.engine.request import DEFAULT_DURABILITY, Durability, RunCommand, RunRequest, to_kwargs
from appliance.engine.webhooks import Webhooks
from appliance.engine.worker import Worker
from appliance.errors import ApplianceError, Conflict, Invalid, NotFound
from appliance.pacing import hand_over
from appliance.services.assistants import AssistantService
from appliance.services.knowledge import KnowledgeService
from appliance.services.limits import Limits, rate_limited
from appliance.services.threads import ThreadService, checked_values
from appliance.store.checkpointer import thread_config
from appliance.store.limits import OverLimit
from appliance.store.runs import CancelAction, NewRun, RunRecord, RunStore, ThreadBusy, ThreadMissing
from appliance.store.threads import ThreadRecord

# Agent Server stream modes this appliance serves, and LangGraph's name for each.
STREAM_MODES = {
    "values": "values",
    "updates": "updates",
    "messages-tuple": "messages",
    "custom": "custom",
    "tasks": "tasks",
    "checkpoints": "checkpoints",
    "debug": "debug",
}
# Sent whatever the stream modes: the run's own news.
ALWAYS_SENT = {"metadata", "error", "queue"}
CLIENT_ROLES = {"user", "human", "assistant", "ai", "tool"}
RESERVED_CONFIG = ("thread_id", "checkpoint_id", "checkpoint_ns")


@dataclass
class RunSpec:
    """What a caller asks of a run, already shaped by the API layer. No
    ``assistant_id``: the thread's (its ``metadata.assistant_id``), else the built-in one."""

    assistant_id: str | None = None
    input: Any = None
    command: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    configurable: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)
    recursion_limit: int | None = None
    stream_mode: list[str] = field(default_factory=lambda: ["values"])
    multitask_strategy: str = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_disconnect: Literal["cancel", "continue"] = "cancel"
    interrupt_before: list[str] | None = None
    interrupt_after: list[str] | None = None
    checkpoint_id: str | None = None
    webhook: str | None = None
    after_seconds: float = 0
    on_completion: Literal["delete", "keep"] = "delete"
    durability: Durability = DEFAULT_DURABILITY
    # The caller is told of the run before its end (False: it waits for the
    # end, which is all it hears; the run's queueing need not wait for the disk).
    announced: bool = True


class Prepared(NamedTuple):
    """A run checked and resolved, ready to queue."""

    assistant_id: str
    request: RunRequest


class RunService:
    def __init__(
        self,
        graph: CompiledStateGraph,
        store: RunStore,
        events: EventLog,
        worker: Worker,
        thread_service: ThreadService,
        policy: MemoryPolicy,
        knowledge: KnowledgeService,
        assistants: AssistantService,
        webhooks: Webhooks,
        limits: Limits,
    ) -> None:
        self.graph = graph
        self.store = store
        self.events = events
        self.worker = worker
        self.thread_service = thread_service
        self.policy = policy
        self.knowledge = knowledge
        self.assistants = assistants
        self.webhooks = webhooks
        self.limits = limits

    # Creating ------------------------------------------------------------------

    async def create(
        self,
        tenant: str,
        thread_id: uuid.UUID,
        spec: RunSpec,
        *,
        key_id: uuid.UUID | None,
        new_thread_metadata: dict[str, Any] | None = None,
    ) -> RunRecord:
        """Check the run and queue it on the thread, by its multitask strategy
        (with if_not_exists='create', a missing thread is made, with ``new_thread_metadata``).
        ``key_id`` is the key that asks (None: the host's CLI), counted in its runs in flight."""
        thread, every_base = await self.thread_service.store.get_with_bases(tenant, thread_id)
        if thread is None and spec.if_not_exists != "create":
            raise NotFound(f"thread {thread_id} not found; pass if_not_exists='create' to create it")
        prepared = await self._prepare(tenant, thread, spec, every_base)
        if thread is None:
            metadata = (new_thread_metadata or {}) | {"assistant_id": prepared.assistant_id}
            await self.thread_service.create(tenant, thread_id, metadata, "do_nothing")
        # The thread remembers the assistant it began with; runs without one use it.
        remember = thread is not None and "assistant_id" not in thread.metadata
        return await self._queue(tenant, thread_id, spec, prepared, key_id, remember_assistant=remember)

    async def create_stateless(self, tenant: str, spec: RunSpec, *, key_id: uuid.UUID | None) -> RunRecord:
        """A run on a thread of its own, made for it (deleted after unless on_completion='keep')."""
        prepared = await self._prepare(tenant, None, spec)  # bad input is refused before the thread is made
        metadata = {"stateless": True, "assistant_id": prepared.assistant_id}
        thread = await self.thread_service.create(tenant, None, metadata, "raise")
        try:
            return await self._queue(tenant, thread.thread_id, spec, prepared, key_id)
        except BaseException:
            await self.thread_service.store.delete(tenant, thread.thread_id)
            raise

    async def discard_stateless(self, run: RunRecord) -> None:
        await self.worker.wait_ended(run.run_id)
        with contextlib.suppress(NotFound):
            await self.thread_service.delete(run.tenant, run.thread_id)

    async def _queue(
        self,
        tenant: str,
        thread_id: uuid.UUID,
        spec: RunSpec,
        prepared: Prepared,
        key_id: uuid.UUID | None,
        *,
        remember_assistant: bool = False,
    ) -> RunRecord:
        if spec.checkpoint_id:
            await self.thread_service.state(tenant, thread_id, spec.checkpoint_id)  # 404 if unknown
        elif prepared.request.input is None and not await self._has_state(thread_id):
            # Well-formed, but the thread's present state refuses it: a run without
            # input, or a command, goes on from a conversation that has begun.
            raise Conflict(
                f"thread {thread_id} has no state to go on from: send input, "
                '{"messages": [{"role": "user", "content": "..."}]}',
                param="input",
            )
        # A slot of this process's worker, so the run can start here at once.
        start_on = self.worker.hold_slot()
        new = NewRun(
            run_id=uuid.uuid4(),
            thread_id=thread_id,
            tenant=tenant,
            assistant_id=prepared.assistant_id,
            kwargs=to_kwargs(prepared.request),
            metadata=spec.metadata,
            multitask_strategy=spec.multitask_strategy,
            delay_s=spec.after_seconds,
            key_id=key_id,
            start_on=start_on,
            remember_assistant=remember_assistant,
            announced=spec.announced,
        )
        created = None
        try:
            created = await self.store.create(new, self.limits.defaults)
        except OverLimit as exc:
            raise rate_limited(exc, tenant) from None
        except ThreadBusy:
            raise Conflict(
                f"thread {thread_id} has a run pending or in progress; multitask_strategy 'reject' refused this one"
            ) from None
        except ThreadMissing:
            raise NotFound(f"thread {thread_id} not found; pass if_not_exists='create' to create it") from None
        finally:
            if start_on is not None:
                self.worker.adopt(created)
            hand_over()  # the request's work is done: the run, here or elsewhere, takes its own place
        return created.run

    async def _has_state(self, thread_id: uuid.UUID) -> bool:
        """A run without input goes on from the thread's last checkpoint: is there one?"""
        return await self.graph.checkpointer.aget_tuple(thread_config(thread_id)) is not None

    async def _prepare(
        self, tenant: str, thread: ThreadRecord | None, spec: RunSpec, every_base: list[str] | None = None
    ) -> Prepared:
        """Check everything the run asks, and resolve its assistant (the run's,
        else the thread's, else the built-in one) into the context it runs with
        (``every_base``: the tenant's knowledge bases, when already read)."""
        if spec.input is not None and spec.command is not None:
            raise Invalid("send either input (a new message) or command (to resume a paused run), not both")
        nodes = set(self.graph.nodes) - {"__start__"}
        for name, value in (("interrupt_before", spec.interrupt_before), ("interrupt_after", spec.interrupt_after)):
            unknown = sorted(set(value or ()) - nodes - {"*"})
            if unknown:
                raise Invalid(
                    f"{name} names nodes the agent does not have: {', '.join(unknown)}; "
                    f"its nodes are {', '.join(sorted(nodes))}"
                )
        if spec.command is not None:
            self._check_command(spec.command, nodes)
        if spec.webhook:
            await self.webhooks.check(spec.webhook)
        remembered = thread.metadata.get("assistant_id") if thread else None
        if spec.assistant_id or not remembered:
            chosen = await self.assistants.for_run(tenant, spec.assistant_id or GRAPH_ID)
        else:
            try:
                chosen = await self.assistants.for_run(tenant, str(remembered))
            except NotFound:
                raise NotFound(
                    f"the assistant of thread {thread.thread_id} (its metadata.assistant_id, {remembered!r}) "
                    "no longer exists; name one with assistant_id",
                    param="assistant_id",
                ) from None
        changes = dict(spec.context)
        chosen_bases = await self._knowledge_bases(tenant, thread, spec, changes, every_base)
        context = await self.assistants.run_context(tenant, chosen, changes, chosen_bases, every_base)
        request = RunRequest(
            assistant_version=chosen.version,
            context=context,
            input=self.validate_input(spec.input, context) if spec.input is not None else None,
            command=run_command(spec.command),
            configurable={k: v for k, v in spec.configurable.items() if k not in RESERVED_CONFIG},
            recursion_limit=spec.recursion_limit,
            stream_mode=stream_modes(spec.stream_mode),
            interrupt_before=spec.interrupt_before,
            interrupt_after=spec.interrupt_after,
            checkpoint_id=spec.checkpoint_id,
            webhook=spec.webhook,
            durability=spec.durability,
        )
        return Prepared(chosen.assistant_id, request)

    def _check_command(self, command: dict[str, Any], nodes: set[str]) -> None:
        unknown = set(command) - {"resume", "update", "goto"}
        if unknown or not command:
            raise Invalid('command takes resume, update and goto; for example {"resume": "yes"}')
        goto = command.get("goto")
        targets = [goto] if isinstance(goto, str) else list(goto or [])
        if any(not isinstance(t, str) or t not in nodes for t in targets):
            raise Invalid(f"command.goto must name nodes of the agent: {', '.join(sorted(nodes))}")
        if len(targets) > 1:  # every node writes this turn's keys: two in one step collide
            raise Invalid("command.goto names one node", param="command.goto")
        update = command.get("update")
        if update is not None and not isinstance(update, dict):
            raise Invalid("command.update must be an object of state keys")
        if update:
            checked_values(update, "command.update")
        if command.get("resume") is None and not update and not targets:
            raise Invalid("command does nothing: give it a resume value, an update or a goto", param="command")
        if where := oversized_int(command.get("resume"), "command.resume"):
            raise Invalid(f"{where} is an integer beyond 64 bits, which a checkpoint cannot hold", param="command")

    async def _knowledge_bases(
        self,
        tenant: str,
        thread: ThreadRecord | None,
        spec: RunSpec,
        changes: dict[str, Any],
        every_base: list[str] | None,
    ) -> list[str] | None:
        """One rule for every client: the run's own choice (context.knowledge_bases,
        or config.configurable.knowledge_bases), else the thread's
        (metadata.knowledge_bases; null there is no choice), else None: its assistant's."""
        if "knowledge_bases" in changes:
            value, where = changes.pop("knowledge_bases"), "context.knowledge_bases"
        elif "knowledge_bases" in spec.configurable:
            value, where = spec.configurable["knowledge_bases"], "config.configurable.knowledge_bases"
        elif thread is not None and thread.metadata.get("knowledge_bases") is not None:
            value = thread.metadata["knowledge_bases"]
            where = f"the metadata.knowledge_bases of thread {thread.thread_id}"
        else:
            return None
        return await self.knowledge.resolve(tenant, value, where, every=every_base)

    def validate_input(self, value: Any, context: AssistantContext | None = None) -> dict[str, Any]:
        """The input's messages, checked, as JSON; each fits the memory budget of ``context``."""
        policy = self.policy
        if context is not None:
            policy = dataclasses.replace(
                policy, system_prompt=context.instructions, token_budget=context.memory_token_budget
            )
        if not isinstance(value, dict) or "messages" not in value:
            raise Invalid('input must be an object with "messages": [{"role": "user", "content": "..."}]')
        extra = set(value) - {"messages"}
        if extra:
            raise Invalid(f"input has keys the agent does not take: {', '.join(sorted(extra))}; send only messages")
        raw = value["messages"]
        if not isinstance(raw, list) or not raw:
            raise Invalid("input.messages must be a non-empty list of messages")
        for i, message in enumerate(raw):
            if not isinstance(message, dict):
                raise Invalid(f"input.messages[{i}] must be an object with role and content")
            named = [message.get(k) for k in ("role", "type") if message.get(k) is not None]
            role = next(iter(named), None)
            if not named or any(not isinstance(r, str) or r not in CLIENT_ROLES for r in named):
                raise Invalid(
                    f"input.messages[{i}].role must be one of user, assistant, tool (got {role!r}); "
                    f"the system prompt is set by the administrator"
                )
            content = message.get("content")
            if role == "tool" and not isinstance(message.get("tool_call_id"), str):
                raise Invalid(f"input.messages[{i}] is a tool result: it needs the tool_call_id it answers")
            # A tool's result, and an answer that is only tool calls, may be empty.
            may_be_empty = role == "tool" or bool(message.get("tool_calls"))
            if not isinstance(content, str) or not (content.strip() or may_be_empty):
                raise Invalid(f"input.messages[{i}].content must be a non-empty string")
            size, limit = policy.count_tokens(content), policy.max_message_tokens()
            if size > limit:
                raise Invalid(
                    f"input.messages[{i}] is {size} tokens long; a message may have at most {limit} "
                    f"tokens with this appliance's context budget"
                )
        try:
            messages = convert_to_messages(raw)
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise Invalid(f"input.messages cannot be read: {exc}") from None
        # Kept as JSON in the queue; the worker converts them again.
        return {"messages": [jsonable(m) for m in messages]}

    # Following and waiting -----------------------------------------------------

    def follow(self, run: RunRecord, after: Position | None, modes: list[str] | None = None) -> AsyncIterator[Event]:
        """The run's stream events after ``after`` (None: from now), only of ``modes`` when given.
        Unknown modes raise here, before a response has started; an empty one
        is none (``langgraph_sdk`` sends ``stream_mode=`` when given none)."""
        modes = [m for m in modes or [] if m]
        wanted = set(stream_modes(modes)) | ALWAYS_SENT if modes else None
        return self._events(run.run_id, after, wanted)

    async def _events(self, run_id: uuid.UUID, after: Position | None, wanted: set[str] | None) -> AsyncIterator[Event]:
        async for event in self.events.follow(run_id, after):
            if wanted is None or event.event in wanted:
                yield event

    async def join(
        self, tenant: str, thread_id: uuid.UUID, run_id: uuid.UUID, *, created: bool = False
    ) -> dict[str, Any]:
        """Wait for the run to end; the thread's values then (with ``__interrupt__``
        when it paused for a human). A run that failed raises its error.
        ``created``: the caller has just created the run, so it need not be looked up first."""
        return jsonable(await self._final_values(tenant, thread_id, run_id, created))

    async def join_json(self, tenant: str, thread_id: uuid.UUID, run_id: uuid.UUID, *, created: bool = False) -> bytes:
        """``join``'s values as the JSON a client receives, encoded in one pass as a
        stream's values event is (a window of messages is not copied into plain dicts first)."""
        return stream_json("values", await self._final_values(tenant, thread_id, run_id, created))

    async def _final_values(
        self, tenant: str, thread_id: uuid.UUID, run_id: uuid.UUID, created: bool
    ) -> dict[str, Any]:
        if not created:
            await self.require(tenant, thread_id, run_id)
        end = await self.worker.wait_ended(run_id, in_flight=created)
        if end.status == "error":
            run = await self.store.get(tenant, thread_id, run_id)
            if run is not None and run.error:
                raise run_error(run.error)
        if end.values is not None:  # it ran here: its final state, as it was committed
            values, interrupts = end.values, end.interrupts
        else:
            snapshot = await self.graph.aget_state(thread_config(thread_id))
            values, interrupts = snapshot.values, list(snapshot.interrupts)
        return {**values, "__interrupt__": interrupts} if interrupts else values

    # Reading and cancelling ----------------------------------------------------

    async def require(self, tenant: str, thread_id: uuid.UUID | None, run_id: uuid.UUID) -> RunRecord:
        run = await self.store.get(tenant, thread_id, run_id)
        if run is None:
            where = f" on thread {thread_id}" if thread_id else ""
            raise NotFound(f"run {run_id} not found{where}")
        return run

    async def list(
        self, tenant: str, thread_id: uuid.UUID, *, limit: int, offset: int, status: str | None
    ) -> list[RunRecord]:
        await self.thread_service.require(tenant, thread_id)
        return await self.store.list(tenant, thread_id, limit=limit, offset=offset, status=status)

    async def cancel(
        self, tenant: str, thread_id: uuid.UUID, run_id: uuid.UUID, action: CancelAction, *, wait: bool = False
    ) -> None:
        before = await self.store.cancel(tenant, thread_id, run_id, action)
        if before is None:
            raise NotFound(f"run {run_id} not found on thread {thread_id}")
        if before not in ("pending", "running"):
            raise Conflict(f"run {run_id} has already ended ({before}); there is nothing to cancel")
        if wait:
            await self.worker.wait_ended(run_id)

    async def stop(self, run: RunRecord, action: CancelAction) -> None:
        """Stop a run its client left, whatever state it has reached meanwhile."""
        await self.store.cancel(run.tenant, run.thread_id, run.run_id, action)

    async def delete(self, tenant: str, thread_id: uuid.UUID, run_id: uuid.UUID) -> None:
        status = await self.store.delete(tenant, thread_id, run_id)
        if status is None:
            raise NotFound(f"run {run_id} not found on thread {thread_id}")
        if status in ("pending", "running"):
            raise Conflict(f"run {run_id} is {status}; cancel it first")


def run_error(payload: dict[str, Any]) -> ApplianceError:
    """A failed run's stored error, as the error its caller gets."""
    error = ApplianceError(payload.get("message", "the run failed"))
    error.status = payload.get("status", 500)
    error.code = payload.get("error", "internal_error")
    error.retry_after = payload.get("retry_after")
    return error


def run_command(command: dict[str, Any] | None) -> RunCommand | None:
    """The checked command (``_check_command``) as the queue carries it."""
    if command is None:
        return None
    try:
        return msgspec.convert(command | {"goto": command.get("goto") or None}, RunCommand)
    except msgspec.ValidationError as exc:
        raise Invalid(f"command: {exc}", param="command") from None


def stream_modes(requested: list[str]) -> list[str]:
    unknown = [m for m in requested if m not in STREAM_MODES]
    if unknown:
        raise Invalid(f"stream_mode {unknown[0]!r} is not available; use any of {', '.join(STREAM_MODES)}")
    return [STREAM_MODES[m] for m in dict.fromkeys(requested)]
