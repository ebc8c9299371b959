"""Runs: one turn of the agent on a thread.

A run is validated and its thread locked before the caller gets an answer (so
``reject`` can say 409 and bad input 422 up front). The graph then runs in its
own task, which passes stream events to the caller through a queue; if the
run fails or is cancelled, every checkpoint it wrote is removed, so a thread
never keeps half a turn.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import convert_to_messages
from langgraph.graph.state import CompiledStateGraph

from appliance.agent.graph import GRAPH_ID
from appliance.agent.memory import MemoryPolicy
from appliance.errors import ApplianceError
from appliance.observability import Metrics
from appliance.services.errors import Conflict, Invalid, NotFound
from appliance.services.jsonable import jsonable
from appliance.services.knowledge import KnowledgeService
from appliance.services.threads import ThreadService, thread_config
from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.locks import ThreadBusy, ThreadLocks, ThreadMissing

log = logging.getLogger(__name__)

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
MULTITASK_STRATEGIES = ("reject", "enqueue")
CLIENT_ROLES = {"user", "human", "assistant", "ai"}

_DONE = object()


@dataclass
class RunSpec:
    """What a caller asks of a run, already shaped by the API layer."""

    assistant_id: str
    input: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    configurable: dict[str, Any] = field(default_factory=dict)
    recursion_limit: int | None = None
    stream_mode: list[str] = field(default_factory=lambda: ["values"])
    multitask_strategy: str = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_disconnect: Literal["cancel", "continue"] = "cancel"


class ActiveRun:
    """A run holding its thread's lock, driven by its own task."""

    def __init__(
        self,
        service: RunService,
        thread_id: uuid.UUID,
        graph_input: dict[str, Any],
        config: dict[str, Any],
        modes: list[str],
        on_disconnect: str,
        locks: AsyncExitStack,
    ) -> None:
        self.service = service
        self.thread_id = thread_id
        self.run_id = config["run_id"]
        self.graph_input = graph_input
        self.config = config
        self.modes = modes
        self.on_disconnect = on_disconnect
        self.locks = locks
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.failure: BaseException | None = None
        self.task = asyncio.create_task(self._drive(), name=f"run-{self.run_id}")

    async def _drive(self) -> None:
        service, started, outcome = self.service, time.perf_counter(), "error"
        try:
            async for mode, chunk in service.graph.astream(self.graph_input, self.config, stream_mode=self.modes):
                self.queue.put_nowait((mode, chunk))
            self.queue.put_nowait(_DONE)
            outcome = "success"
        except BaseException as exc:
            removed = await asyncio.shield(service.checkpointer.adelete_run(str(self.thread_id), str(self.run_id)))
            cancelled = isinstance(exc, asyncio.CancelledError)
            outcome = "cancelled" if cancelled else "error"
            self.failure = exc
            log.warning(
                "run %s",
                "cancelled" if cancelled else "failed",
                extra={
                    "run_id": str(self.run_id),
                    "thread_id": str(self.thread_id),
                    "error": repr(exc),
                    "checkpoints_removed": removed,
                },
            )
            self.queue.put_nowait(exc)
            if cancelled:
                raise
        finally:
            service.metrics.observe_run(outcome, time.perf_counter() - started)
            await asyncio.shield(self.locks.aclose())

    async def events(self, heartbeat: float | None = None) -> AsyncIterator[tuple[str, Any]]:
        """(mode, chunk) pairs as the graph produces them; a failure arrives as
        ("error", {...}), and ("heartbeat", None) after ``heartbeat`` quiet
        seconds. Leaving early cancels the run unless on_disconnect is "continue"."""
        finished = False
        try:
            while True:
                try:
                    item = await asyncio.wait_for(self.queue.get(), heartbeat)
                except TimeoutError:
                    yield "heartbeat", None
                    continue
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, BaseException):
                    finished = True
                    yield "error", error_payload(item)
                    return
                yield item
        finally:
            if not finished and self.on_disconnect == "cancel":
                self.task.cancel()
            elif finished:
                # Answer only once the thread is released (status idle, lock free).
                await asyncio.wait([self.task])

    async def wait(self) -> dict[str, Any]:
        """Run to the end and return the thread's final state values."""
        final: Any = {}
        async for mode, chunk in self.events():
            if mode == "values":
                final = chunk
        if self.failure is not None:
            raise self.failure
        return jsonable(final)


def error_payload(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, ApplianceError):
        return {"error": exc.code, "message": exc.message}
    if isinstance(exc, asyncio.CancelledError):
        return {"error": "cancelled", "message": "the run was cancelled"}
    return {"error": "internal_error", "message": "the run failed; see the appliance's log"}


class RunService:
    def __init__(
        self,
        graph: CompiledStateGraph,
        checkpointer: PooledPostgresSaver,
        thread_service: ThreadService,
        locks: ThreadLocks,
        policy: MemoryPolicy,
        metrics: Metrics,
        knowledge: KnowledgeService,
    ) -> None:
        self.knowledge = knowledge
        self.graph = graph
        self.checkpointer = checkpointer
        self.thread_service = thread_service
        self.locks = locks
        self.policy = policy
        self.metrics = metrics

    async def wait(self, tenant: str, thread_id: uuid.UUID, spec: RunSpec) -> dict[str, Any]:
        """Run to the end; the answer is the thread's final state values. A
        caller that stops waiting does not cancel the turn."""
        run = await self.start(tenant, thread_id, spec, modes=["values"], on_disconnect="continue")
        return await run.wait()

    async def start(
        self,
        tenant: str,
        thread_id: uuid.UUID,
        spec: RunSpec,
        *,
        modes: list[str] | None = None,
        on_disconnect: str | None = None,
    ) -> ActiveRun:
        """Validate, lock the thread, and start the run. ``modes`` and
        ``on_disconnect`` replace the spec's (after it is validated)."""
        if spec.assistant_id != GRAPH_ID:
            raise NotFound(f"assistant {spec.assistant_id!r} not found; this appliance serves {GRAPH_ID!r}")
        requested = stream_modes(spec.stream_mode)  # validated even when replaced
        modes = modes or requested
        if spec.multitask_strategy not in MULTITASK_STRATEGIES:
            raise Invalid(
                f"multitask_strategy {spec.multitask_strategy!r} is not available; "
                f"use one of {', '.join(MULTITASK_STRATEGIES)}"
            )
        graph_input = self.validate_input(spec.input)

        if spec.if_not_exists == "create":
            await self.thread_service.create(tenant, thread_id, {}, "do_nothing")
        knowledge_bases = await self._knowledge_bases(tenant, thread_id, spec)

        stack = AsyncExitStack()
        try:
            await stack.enter_async_context(
                self.locks.hold(thread_id, tenant, wait=spec.multitask_strategy == "enqueue")
            )
        except ThreadBusy:
            await stack.aclose()
            raise Conflict(
                f"thread {thread_id} has a run in progress; multitask_strategy 'reject' refused this one"
            ) from None
        except ThreadMissing:
            await stack.aclose()
            raise NotFound(f"thread {thread_id} not found; pass if_not_exists='create' to create it") from None
        except BaseException:
            await stack.aclose()
            raise

        run_id = uuid.uuid4()
        config = thread_config(thread_id)
        config["configurable"] |= {
            k: v for k, v in spec.configurable.items() if k not in ("thread_id", "checkpoint_id", "checkpoint_ns")
        }
        config["configurable"]["knowledge_bases"] = knowledge_bases
        config |= {
            "run_id": run_id,
            "metadata": {**spec.metadata, "run_id": str(run_id), "assistant_id": GRAPH_ID, "tenant": tenant},
        }
        if spec.recursion_limit:
            config["recursion_limit"] = spec.recursion_limit
        return ActiveRun(self, thread_id, graph_input, config, modes, on_disconnect or spec.on_disconnect, stack)

    async def _knowledge_bases(self, tenant: str, thread_id: uuid.UUID, spec: RunSpec) -> list[str]:
        """The run's own choice (config.configurable.knowledge_bases), else the thread's metadata.knowledge_bases."""
        if "knowledge_bases" in spec.configurable:
            return await self.knowledge.resolve(
                tenant, spec.configurable["knowledge_bases"], "config.configurable.knowledge_bases"
            )
        thread = await self.thread_service.store.get(tenant, thread_id)
        chosen = thread.metadata.get("knowledge_bases") if thread else None
        return await self.knowledge.resolve(tenant, chosen, f"the metadata.knowledge_bases of thread {thread_id}")

    def validate_input(self, value: Any) -> dict[str, Any]:
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
            role = message.get("role", message.get("type"))
            if role not in CLIENT_ROLES:
                raise Invalid(
                    f"input.messages[{i}].role must be one of user, assistant (got {role!r}); "
                    f"the system prompt is set by the administrator"
                )
            content = message.get("content")
            if not isinstance(content, str) or not content.strip():
                raise Invalid(f"input.messages[{i}].content must be a non-empty string")
            size, limit = self.policy.count_tokens(content), self.policy.max_message_tokens()
            if size > limit:
                raise Invalid(
                    f"input.messages[{i}] is {size} tokens long; a message may have at most {limit} "
                    f"tokens with this appliance's context budget"
                )
        try:
            messages = convert_to_messages(raw)
        except (ValueError, NotImplementedError) as exc:
            raise Invalid(f"input.messages cannot be read: {exc}") from None
        return {"messages": messages}


def stream_modes(requested: list[str]) -> list[str]:
    unknown = [m for m in requested if m not in STREAM_MODES]
    if unknown:
        raise Invalid(f"stream_mode {unknown[0]!r} is not available; use any of {', '.join(STREAM_MODES)}")
    return [STREAM_MODES[m] for m in dict.fromkeys(requested)] or ["values"]
