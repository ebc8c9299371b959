"""Runs on a thread: wait for the final state, or stream it as it happens."""

from __future__ import annotations

import uuid
from typing import Any

from litestar import Controller, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.response import Stream

from appliance.api.schemas import UNSUPPORTED_RUN_FIELDS, RunCreate
from appliance.api.sse import run_events
from appliance.runtime import Runtime
from appliance.services.errors import Invalid
from appliance.services.runs import RunSpec


def to_spec(data: JSONBody[RunCreate]) -> RunSpec:
    for name in UNSUPPORTED_RUN_FIELDS:
        if getattr(data, name) is not None:
            raise Invalid(f"{name} is not supported by this version of the appliance; leave it out")
    if data.context:
        raise Invalid("context is not used by this appliance's agent; pass settings in config.configurable")
    if data.stream_resumable:
        raise Invalid("stream_resumable is not supported by this version of the appliance; leave it out")
    modes = [data.stream_mode] if isinstance(data.stream_mode, str) else list(data.stream_mode)
    return RunSpec(
        assistant_id=data.assistant_id,
        input=data.input,
        metadata=data.metadata,
        configurable=data.config.configurable,
        recursion_limit=data.config.recursion_limit,
        stream_mode=modes,
        multitask_strategy=data.multitask_strategy,
        if_not_exists=data.if_not_exists,
        on_disconnect=data.on_disconnect,
    )


class RunController(Controller):
    path = "/threads/{thread_id:uuid}/runs"
    tags = ["runs"]

    @post("/wait", status_code=200, summary="Run the agent and wait for the thread's final state")
    async def wait(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[RunCreate],
    ) -> dict[str, Any]:
        return await runtime.runs.wait(tenant, thread_id, to_spec(data))

    @post("/stream", status_code=200, summary="Run the agent and stream its output (Server-Sent Events)")
    async def stream(
        self,
        runtime: NamedDependency[Runtime],
        tenant: NamedDependency[str],
        thread_id: FromPath[uuid.UUID],
        data: JSONBody[RunCreate],
    ) -> Stream:
        run = await runtime.runs.start(tenant, thread_id, to_spec(data))
        return Stream(
            run_events(run),
            media_type="text/event-stream",
            headers={
                "Content-Location": f"/threads/{thread_id}/runs/{run.run_id}",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            },
        )
