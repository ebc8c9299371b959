"""Runs on a thread: background, streamed or awaited; list, get, join,
follow, cancel and delete. Stateless runs (a thread made for the run) too."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Stream

from appliance.api.lane import STARTS_TURN
from appliance.api.schemas import MAX_OFFSET, Run, RunCreate
from appliance.api.sse import event_stream, frame, run_location, sse
from appliance.engine.events import START, parse_event_id
from appliance.engine.jsonable import run_json
from appliance.engine.request import DEFAULT_DURABILITY
from appliance.errors import Invalid
from appliance.runtime import Runtime
from appliance.services.runs import RunSpec
from appliance.store.audit import Actor
from appliance.store.runs import RunRecord

T = TypeVar("T")


def as_list(value: str | list[str] | None) -> list[str] | None:
    return [value] if isinstance(value, str) else value


def to_spec(data: RunCreate, *, followed: bool = True) -> RunSpec:
    """``followed``: a stream may follow the run, so without a stream_mode it
    records values (the Agent Server's default). A run its caller waits for
    answers with the final state instead, and records only what is asked:
    values at every step are the whole window, again and again, for no one;
    its caller hears of it only at its end (``RunSpec.announced``)."""
    if data.feedback_keys:
        raise Invalid("feedback_keys needs LangSmith, which an offline appliance does not use; leave it out")
    if data.langsmith_tracer:
        raise Invalid("langsmith_tracer: an offline appliance sends no traces anywhere; leave it out")
    return RunSpec(
        assistant_id=data.assistant_id,
        input=data.input,
        command=data.command,
        metadata=data.metadata,
        configurable=data.config.configurable,
        context=data.context or {},
        recursion_limit=data.config.recursion_limit,
        stream_mode=as_list(data.stream_mode) or (["values"] if followed else []),
        multitask_strategy=data.multitask_strategy,
        if_not_exists=data.if_not_exists,
        on_disconnect=data.on_disconnect,
        interrupt_before=as_list(data.interrupt_before),
        interrupt_after=as_list(data.interrupt_after),
        checkpoint_id=data.checkpoint_id or (data.checkpoint.checkpoint_id if data.checkpoint else None),
        webhook=data.webhook,
        after_seconds=data.after_seconds or 0,
        on_completion=data.on_completion,
        durability=data.durability or DEFAULT_DURABILITY,
        announced=followed,
    )


# A call that waits for its run (wait, stream) holds a connection meanwhile;
# proxies and clients give up on one silent for about a minute.
HELD_DELAY_S = 60


def held_spec(data: RunCreate, *, followed: bool = True) -> RunSpec:
    """The spec of a run the call waits for: one that starts while the call can wait."""
    if (data.after_seconds or 0) > HELD_DELAY_S:
        raise Invalid(
            f"after_seconds: a call that waits for its run may delay it at most {HELD_DELAY_S} s; "
            f"start a later run with POST .../runs and join it when it is due",
            param="after_seconds",
        )
    return to_spec(data, followed=followed)


async def disconnected(request: Request) -> None:
    """Returns when the client closes the connection."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


# nginx's word for a caller that left before its answer: seen in logs and metrics, by no client.
CLIENT_LEFT = 499


async def unless_left(
    request: Request, waiting: Awaitable[T], on_leave: Callable[[], Awaitable[None]] | None = None
) -> T | Response:
    """What ``waiting`` gives, unless the caller leaves first: then the wait ends
    (a join on a run due tomorrow must not hold a handler until then) and ``on_leave`` runs."""
    work = asyncio.ensure_future(waiting)
    left = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait({work, left}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # the handler itself is cancelled (the server stopping): no wait outlives it
        work.cancel()
        raise
    finally:
        left.cancel()
    if work.done():
        return work.result()
    work.cancel()
    if on_leave:
        await on_leave()
    return Response(None, status_code=CLIENT_LEFT)


def to_run(record: RunRecord) -> Run:
    return Run(**run_json(record))


def located(content: Any, run: RunRecord, *, then: str = "") -> Response:
    url = run_location(run.thread_id, run.run_id)
    headers = {"Content-Location": url}
    if then:
        headers["Location"] = f"{url}/{then}"
    return Response(content, headers=headers)


async def stream_new_run(runtime: Runtime, run: RunRecord, spec: RunSpec, *, stateless: bool = False) -> Stream:
    """The stream of a run just created: metadata first, then every event."""
    runs = runtime.runs

    async def dropped() -> None:
        # The caller left: undo the turn (no half turn stays), unless asked to go on.
        if spec.on_disconnect == "cancel":
            await runs.stop(run, "rollback")

    async def body() -> Any:
        try:
            async for chunk in sse(
                runs.follow(run, START),
                heartbeat_s=runtime.settings.stream_heartbeat_s,
                first=frame("metadata", {"run_id": str(run.run_id), "thread_id": str(run.thread_id), "attempt": 1}),
                on_early_close=dropped,
            ):
                yield chunk
        finally:
            if stateless and spec.on_completion == "delete":
                await asyncio.shield(runs.discard_stateless(run))

    return event_stream(body(), run.thread_id, run.run_id)


class RunController(Controller):
    path = "/threads/{thread_id:uuid}/runs"
    tags = ["runs"]

    @post("/", status_code=200, summary="Start a run in the background", opt=STARTS_TURN)
    async def create(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[RunCreate],
    ) -> Response[Run]:
        run = await runtime.runs.create(tenant, thread_id, to_spec(data), key_id=actor.key_id)
        return located(to_run(run), run, then="stream")

    @post(
        "/stream",
        status_code=200,
        summary="Start a run and stream its events (Server-Sent Events)",
        opt={"event_stream": True, **STARTS_TURN},
    )
    async def stream(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[RunCreate],
    ) -> Stream:
        spec = held_spec(data)
        run = await runtime.runs.create(tenant, thread_id, spec, key_id=actor.key_id)
        return await stream_new_run(runtime, run, spec)

    @post(
        "/wait",
        status_code=200,
        summary="Start a run and wait for the thread's final state",
        opt={"answers_with_run": True, **STARTS_TURN},
    )
    async def wait(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[RunCreate],
        request: Request,
    ) -> Response[dict[str, Any]]:
        # The turn goes on if the caller stops waiting; it can join the run later.
        run = await runtime.runs.create(tenant, thread_id, held_spec(data, followed=False), key_id=actor.key_id)
        values = await unless_left(request, runtime.runs.join_json(tenant, thread_id, run.run_id, created=True))
        return values if isinstance(values, Response) else located(values, run, then="join")

    @get("/", summary="The thread's runs, newest first")
    async def list_runs(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 10,
        offset: Annotated[int, QueryParameter(ge=0, le=MAX_OFFSET)] = 0,
        status: FromQuery[Literal["pending", "running", "error", "success", "timeout", "interrupted"] | None] = None,
    ) -> list[Run]:
        records = await runtime.runs.list(tenant, thread_id, limit=limit, offset=offset, status=status)
        return [to_run(r) for r in records]

    @get("/{run_id:uuid}", summary="A run")
    async def read(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        run_id: FromPath[uuid.UUID],
    ) -> Run:
        return to_run(await runtime.runs.require(tenant, thread_id, run_id))

    @delete("/{run_id:uuid}", summary="Delete a run that has ended")
    async def remove(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        run_id: FromPath[uuid.UUID],
    ) -> None:
        await runtime.runs.delete(tenant, thread_id, run_id)

    @get(
        "/{run_id:uuid}/join", summary="Wait for a run to end; the thread's state then", opt={"answers_with_run": True}
    )
    async def join(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        run_id: FromPath[uuid.UUID],
        request: Request,
        cancel_on_disconnect: FromQuery[bool] = False,
    ) -> Response[dict[str, Any]]:
        async def stop() -> None:  # the caller left first: the run stops, keeping its work
            await runtime.runs.stop(await runtime.runs.require(tenant, thread_id, run_id), "interrupt")

        values = await unless_left(
            request, runtime.runs.join_json(tenant, thread_id, run_id), stop if cancel_on_disconnect else None
        )
        return values if isinstance(values, Response) else Response(values)

    @get(
        "/{run_id:uuid}/stream",
        summary="Follow a run's stream; Last-Event-ID replays what was missed",
        # langgraph_sdk sends stream_mode= when given none.
        opt={"event_stream": True, "empty_query": ("stream_mode",)},
    )
    async def follow(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        run_id: FromPath[uuid.UUID],
        last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID")] = None,
        stream_mode: FromQuery[list[str] | None] = None,
        cancel_on_disconnect: FromQuery[bool] = False,
    ) -> Stream:
        run = await runtime.runs.require(tenant, thread_id, run_id)
        after = parse_event_id(last_event_id)

        async def cancel() -> None:
            await runtime.runs.stop(run, "interrupt")

        body = sse(
            runtime.runs.follow(run, after, stream_mode),
            heartbeat_s=runtime.settings.stream_heartbeat_s,
            on_early_close=cancel if cancel_on_disconnect else None,
        )
        return event_stream(body, thread_id, run_id)

    @post(
        "/{run_id:uuid}/cancel", status_code=202, summary="Cancel a run (interrupt keeps its work, rollback erases it)"
    )
    async def cancel(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        run_id: FromPath[uuid.UUID],
        wait: FromQuery[bool] = False,
        action: FromQuery[Literal["interrupt", "rollback"]] = "interrupt",
    ) -> None:
        await runtime.runs.cancel(tenant, thread_id, run_id, action, wait=wait)


class StatelessRunController(Controller):
    """Runs without a thread of the caller's: each gets a thread of its own,
    deleted when it ends unless on_completion is 'keep'."""

    path = "/runs"
    tags = ["runs"]

    @post(
        "/stream",
        status_code=200,
        summary="Run once, on a new thread, and stream its events",
        opt={"event_stream": True, **STARTS_TURN},
    )
    async def stream(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        data: JSONBody[RunCreate],
    ) -> Stream:
        spec = held_spec(data)
        run = await runtime.runs.create_stateless(tenant, spec, key_id=actor.key_id)
        return await stream_new_run(runtime, run, spec, stateless=True)

    @post(
        "/wait",
        status_code=200,
        summary="Run once, on a new thread, and wait for its final state",
        opt={"answers_with_run": True, **STARTS_TURN},
    )
    async def wait(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        actor: NamedDependency[Actor],
        data: JSONBody[RunCreate],
        request: Request,
    ) -> Response[dict[str, Any]]:
        spec = held_spec(data, followed=False)
        run = await runtime.runs.create_stateless(tenant, spec, key_id=actor.key_id)
        try:
            values = await unless_left(request, runtime.runs.join_json(tenant, run.thread_id, run.run_id, created=True))
            return values if isinstance(values, Response) else Response(values)
        finally:
            if spec.on_completion == "delete":
                await asyncio.shield(runtime.runs.discard_stateless(run))
