"""One attempt of one run: drive the graph, publish its stream, record the end.

How an attempt ends decides what the thread keeps:
- success: the thread keeps the turn (``interrupted`` when the graph paused
  for a human, ``idle`` otherwise);
- an error: every checkpoint the run wrote is removed, so no half turn stays;
- cancelled with ``interrupt``: the checkpoints stay, and the next run goes on
  from them; with ``rollback``: the checkpoints and the run itself are erased;
- the worker stopping (or dying): the run goes back to the queue, and the next
  attempt resumes from the run's last checkpoint, so the turn's answer is
  written once however often it is retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import msgspec
from langchain_core.messages import convert_to_messages
from langgraph.errors import EmptyInputError, InvalidUpdateError
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Command

from appliance.engine.events import EventLog, LiveRun
from appliance.engine.jsonable import run_json, stream_json
from appliance.engine.request import RunRequest, from_kwargs
from appliance.engine.webhooks import Webhooks
from appliance.engine.worker import RunEnd, Worker
from appliance.errors import ApplianceError
from appliance.llm.gate import queue_reporter
from appliance.observability import Metrics
from appliance.pacing import Lane
from appliance.store.checkpointer import PooledPostgresSaver, Waiting, thread_config
from appliance.store.faults import storage_fault
from appliance.store.runs import RunRecord, RunStatus, RunStore

log = logging.getLogger(__name__)

# A run cut off by a database outage waits this long before another attempt.
REQUEUE_DELAY_S = 1.0
# Recording a run's end when PostgreSQL cannot take it: tried again after these waits, doubling.
RETRY_MIN_S, RETRY_MAX_S = 0.5, 5.0


class RunAbandoned(ApplianceError):
    status = 500
    code = "run_abandoned"


def error_payload(exc: BaseException) -> dict[str, Any]:
    if storage_fault(exc) == "full":
        message = "the appliance's data disk is full; the turn was not kept. An admin must free space"
        return {"error": "insufficient_storage", "message": message, "status": 507}
    if isinstance(exc, EmptyInputError):  # the thread lost its state after the run was accepted
        return {"error": "conflict", "message": "the thread has no state to go on from: send input", "status": 409}
    if isinstance(exc, InvalidUpdateError):  # a state update or a goto scheduled nodes that collide
        message = (
            f"the thread's state cannot go on ({str(exc).splitlines()[0]}): run from an earlier "
            f"checkpoint_id, or set the state with threads.update_state"
        )
        return {"error": "conflict", "message": message, "status": 409}
    if isinstance(exc, ApplianceError):
        payload: dict[str, Any] = {"error": exc.code, "message": exc.message, "status": exc.status}
        if exc.retry_after:
            payload["retry_after"] = exc.retry_after
        return payload
    return {"error": "internal_error", "message": "the run failed; see the appliance's log", "status": 500}


def graph_input(request: RunRequest) -> Any:
    """The run's input as the graph takes it: messages, or a Command."""
    if command := request.command:
        return Command(resume=command.resume, update=command.update, goto=command.goto or ())
    if request.input is None:
        return None
    return {"messages": convert_to_messages(request.input["messages"])}


class UnreadableRun(ApplianceError):
    status = 409
    code = "unreadable_run"


def request_of(run: RunRecord) -> RunRequest:
    try:
        return from_kwargs(run.kwargs)
    except msgspec.ValidationError as exc:  # queued by a version of the appliance before this one
        raise UnreadableRun(
            f"this run was queued in a form this appliance cannot read ({exc}); send it again"
        ) from None


class RunExecutor:
    def __init__(
        self,
        graph: CompiledStateGraph,
        checkpointer: PooledPostgresSaver,
        store: RunStore,
        events: EventLog,
        webhooks: Webhooks,
        metrics: Metrics,
        lane: Lane,
        *,
        max_attempts: int,
    ) -> None:
        self.graph = graph
        self.checkpointer = checkpointer
        self.store = store
        self.events = events
        self.webhooks = webhooks
        self.metrics = metrics
        self.lane = lane
        self.max_attempts = max_attempts

    async def __call__(self, run: RunRecord, worker: Worker, *, blank: bool = False) -> None:
        live = self.events.open(run.run_id, run.attempt)
        token = queue_reporter.set(
            lambda position, waiting: self.events.publish(live, "queue", {"position": position, "waiting": waiting})
        )
        started, outcome = time.perf_counter(), "error"
        try:
            outcome = await self._attempt(run, worker, live, blank)
        finally:
            queue_reporter.reset(token)
            self.events.close(live, final=outcome != "requeued")
            self.metrics.observe_run(outcome, time.perf_counter() - started)
        webhook = run.kwargs.get("webhook")  # readable even when the rest of the request is not
        if outcome != "requeued" and isinstance(webhook, str):
            self.webhooks.send(webhook, await self._final_run(run))

    async def _attempt(self, run: RunRecord, worker: Worker, live: LiveRun, blank: bool) -> str:
        thread_id, run_id = str(run.thread_id), str(run.run_id)
        try:
            if run.cancel_action or run.run_id in worker.cancelled:
                raise asyncio.CancelledError
            if run.attempt > self.max_attempts:
                raise RunAbandoned(f"the process running this run stopped {run.attempt - 1} times; giving up")
            # A run goes on with the work of the request that made it: ahead of the
            # line. Cancelled while it waits there, it stops as below, like any run.
            async with self.lane.turn(ahead=True):
                return await self._run_to_end(run, worker, live, blank)
        except asyncio.CancelledError:
            return await asyncio.shield(self._stopped(run, worker, live))
        except Exception as exc:
            if storage_fault(exc) == "unavailable":
                # Nothing is wrong with the run: it goes on from its last checkpoint once the database is back.
                log.warning("run %s paused: the database is unavailable (%r)", run_id, exc)
                await asyncio.shield(self._requeue(run, worker))
                return "requeued"
            payload = error_payload(exc)
            if payload["error"] == "internal_error":
                log.exception("run %s failed", run_id, extra={"thread_id": thread_id})
            else:
                log.warning("run %s failed: %s", run_id, payload["message"], extra={"thread_id": thread_id})
            await asyncio.shield(self.checkpointer.adelete_run(thread_id, run_id))
            self.events.publish(live, "error", payload)
            await self.events.flush()
            await self._finish(run, worker, "error", "idle", error=payload)
            return "error"

    async def _run_to_end(self, run: RunRecord, worker: Worker, live: LiveRun, blank: bool) -> str:
        """The attempt itself: the graph's steps streamed, then the run's end
        recorded. ``blank``: the thread has no checkpoint (``Execute``)."""
        thread_id, run_id = str(run.thread_id), str(run.run_id)
        request = request_of(run)
        value = graph_input(request)
        if run.attempt > 1:
            self.events.publish(live, "metadata", {"run_id": run_id, "attempt": run.attempt})
            if await self.checkpointer.ahas_run(thread_id, run_id):
                value = None  # go on from the run's last checkpoint
        config, wanted = self._config(run, request), request.stream_mode
        paused, interrupts, values = False, [], None
        # Updates are always watched: an "__interrupt__" one says the graph
        # paused for a person. Values too: the last is the final state, which
        # this process's waiters then need not read back.
        # The run's last checkpoint waits for its end, and commits with it (``_finish``).
        async with self.checkpointer.writes_with_next_checkpoint(until_end=self.graph.trigger_to_nodes) as stored:
            if blank:
                stored.blank = thread_id
            async for mode, chunk in self.graph.astream(
                value,
                config,
                stream_mode=list(dict.fromkeys([*wanted, "updates", "values"])),
                context=request.context,
                interrupt_before=request.interrupt_before,
                interrupt_after=request.interrupt_after,
                durability=request.durability,
            ):
                if mode == "updates" and "__interrupt__" in chunk:
                    paused = True
                    interrupts.extend(chunk["__interrupt__"])
                elif mode == "values":
                    values = chunk
                if mode in wanted:
                    self.events.publish_json(live, mode, stream_json(mode, chunk))
            if not paused:  # the state of the run's last checkpoint: the thread's next turn starts from it
                stored.ended_with(values)
        await self.events.flush()
        end = RunEnd("success", values, interrupts)
        await self._finish(run, worker, "success", "interrupted" if paused else "idle", end=end, stored=stored)
        return "success"

    async def _stopped(self, run: RunRecord, worker: Worker, live: LiveRun) -> str:
        try:
            action = await self.store.cancel_action(run.run_id)
        except Exception as exc:
            if storage_fault(exc) != "unavailable":
                raise
            action = None  # the worker lost the database: the sweep hands the run back
        if action is None:
            return "requeued"  # the worker is stopping; the sweeper hands the run back
        thread_id, run_id = str(run.thread_id), str(run.run_id)
        if action == "rollback":
            await self.checkpointer.adelete_run(thread_id, run_id)
            self.events.publish(live, "error", {"error": "rolled_back", "message": "the run was cancelled and undone"})
            await self.store.erase(run, worker.worker_id)
            return "cancelled"
        self.events.publish(live, "error", {"error": "interrupted", "message": "the run was interrupted"})
        await self.events.flush()
        await self._finish(run, worker, "interrupted", "idle")
        return "cancelled"

    async def _finish(
        self,
        run: RunRecord,
        worker: Worker,
        status: RunStatus,
        thread_status: str,
        error: dict | None = None,
        end: RunEnd | None = None,
        stored: Waiting | None = None,
    ) -> None:
        """Record how the attempt ended. PostgreSQL unable to take the write now
        (its disk full, or restarting) is asked again until it can: a run that
        ended must not stay 'running'. A worker that lost the run meanwhile stops asking.
        ``stored``: what the run's graph left waiting for its end (its last
        checkpoint), stored in the same transaction (asked again with it: its
        statements can be); a full disk then fails the turn, which is not kept,
        as the checkpoint's own write did."""
        statements = self.checkpointer.end_statements(stored) if stored else []
        delay = RETRY_MIN_S
        while True:
            try:
                await self.store.finish(
                    run, worker.worker_id, status, thread_status, error=error, with_statements=statements
                )
                if stored:
                    self.checkpointer.end_committed(stored)
                worker.ended_here(run.run_id, end or RunEnd(status))
                return
            except Exception as exc:
                fault = storage_fault(exc)
                if fault is None or (fault == "full" and statements):
                    raise
                log.warning("the end of run %s is not recorded yet: %r", run.run_id, exc)
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_S)

    async def _requeue(self, run: RunRecord, worker: Worker) -> None:
        """Hand the run back to the queue, asked again until PostgreSQL takes it
        or the run is no longer this worker's: a worker that lost the database
        comes back under a new identity, and the sweep hands back the old one's
        runs; one that only met a busy pool stays, and nothing else would."""
        delay = RETRY_MIN_S
        while True:
            try:
                await self.store.requeue(run, worker.worker_id, delay_s=REQUEUE_DELAY_S)
                return
            except Exception as exc:
                if storage_fault(exc) is None:
                    log.exception("run %s could not be handed back to the queue", run.run_id)
                    return
                log.debug("run %s not requeued yet: %r", run.run_id, exc)
            await asyncio.sleep(delay)
            delay = min(2 * delay, RETRY_MAX_S)

    def _config(self, run: RunRecord, request: RunRequest) -> dict[str, Any]:
        config = thread_config(run.thread_id, request.checkpoint_id)
        config["configurable"] |= request.configurable
        config |= {
            "run_id": run.run_id,
            "metadata": {
                **run.metadata,
                "run_id": str(run.run_id),
                "assistant_id": run.assistant_id,
                "assistant_version": request.assistant_version,
                "tenant": run.tenant,
            },
        }
        if request.recursion_limit:
            config["recursion_limit"] = request.recursion_limit
        return config

    async def _final_run(self, run: RunRecord) -> dict[str, Any]:
        record = await self.store.get(run.tenant, run.thread_id, run.run_id)
        body = run_json(record or run)
        if record is None:
            body["status"] = "interrupted"  # rolled back: the row is gone
        return body
