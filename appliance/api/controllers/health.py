"""Health (no key needed) and metrics (admin key)."""

from __future__ import annotations

import asyncio

from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from appliance.api.auth import admin_only
from appliance.api.schemas import Check, Ok, Readiness
from appliance.llm.errors import ModelError
from appliance.runtime import Runtime

CHECK_TIMEOUT_S = 5.0


async def _postgres(runtime: NamedDependency[Runtime]) -> Check:
    async with runtime.pool.connection() as conn:
        await conn.execute("SELECT 1")
    stats = runtime.pool.get_stats()
    return Check(True, f"connected; pool {stats.get('pool_size', 0)} open, {stats.get('pool_available', 0)} idle")


async def _chroma(runtime: NamedDependency[Runtime]) -> Check:
    count = await runtime.knowledge.vectors_indexed()
    pending = await runtime.knowledge.store.count_unindexed()
    waiting = f"; {pending} documents waiting to be indexed" if pending else ""
    return Check(True, f"answered; {count} vectors indexed{waiting}")


async def _model(runtime: NamedDependency[Runtime]) -> Check:
    return Check(True, await runtime.model.check())


async def _checked(probe, runtime: NamedDependency[Runtime]) -> Check:
    try:
        return await asyncio.wait_for(probe(runtime), CHECK_TIMEOUT_S)
    except ModelError as exc:
        return Check(False, exc.message)
    except TimeoutError:
        return Check(False, f"no answer within {CHECK_TIMEOUT_S:.0f} s")
    except Exception as exc:  # any failure is the answer here
        return Check(False, f"{type(exc).__name__}: {exc}")


async def _tool_servers(runtime: Runtime) -> dict[str, Check]:
    """Each registered tool server, asked for its tools now; one that does not
    answer leaves the appliance ready, without that server's tools (degraded)."""
    try:
        states = await asyncio.wait_for(runtime.tool_servers.health(), CHECK_TIMEOUT_S)
    except TimeoutError:
        return {"tool_servers": Check(False, f"no answer within {CHECK_TIMEOUT_S:.0f} s")}
    except Exception as exc:  # PostgreSQL away: its own check says so
        return {"tool_servers": Check(False, f"{type(exc).__name__}: {exc}")}
    return {
        f"tool_server:{name}": Check(error is None, error or "answered with its tools")
        for name, error in states.items()
    }


def _model_servers(runtime: Runtime) -> dict[str, Check]:
    """With several model servers, each one: one taken out leaves the appliance
    ready on the others (degraded) until a probe finds it back."""
    states = runtime.model.servers() if runtime.model.servers else []
    if len(states) < 2:
        return {}
    return {
        f"model_server:{s.url}": Check(
            s.up, f"{s.in_flight} calls in flight, {s.calls} in all" if s.up else f"taken out: {s.error}"
        )
        for s in states
    }


class HealthController(Controller):
    tags = ["health"]
    opt = {"exclude_from_auth": True}

    @get("/ok", summary="Agent Server style health check")
    async def ok(self) -> Ok:
        return Ok()

    @get("/healthz", summary="Liveness: the process answers")
    async def healthz(self) -> Ok:
        return Ok()

    @get(
        "/readyz",
        summary="Readiness: PostgreSQL, Chroma, the model and each tool server, each reported",
        description="Ready (200) when PostgreSQL and the model answer; with Chroma down too, but `degraded`: "
        "searches and answers come from the lexical index alone until it is back. A tool server that does not "
        "answer (`tool_server:NAME`) is `degraded` too: runs go on without its tools; so is a model server taken "
        "out (`model_server:URL`, with several): the others take its calls.",
        responses={503: ResponseSpec(Readiness, description="Not ready: the checks say which part failed")},
    )
    async def readyz(self, runtime: NamedDependency[Runtime]) -> Response[Readiness]:
        names = ("postgres", "chroma", "model")
        *results, tools = await asyncio.gather(
            *(_checked(p, runtime) for p in (_postgres, _chroma, _model)), _tool_servers(runtime)
        )
        checks = dict(zip(names, results, strict=True))
        servers = _model_servers(runtime)  # as the model's check just found them
        ready = checks["postgres"].ok and checks["model"].ok
        partial = (*tools.values(), *servers.values())
        degraded = not checks["chroma"].ok or not all(c.ok for c in partial)
        readiness = Readiness(ready=ready, checks=checks | servers | tools, degraded=degraded)
        return Response(readiness, status_code=200 if ready else 503)


class MetricsController(Controller):
    tags = ["health"]

    @get("/metrics", guards=[admin_only], summary="Prometheus metrics (admin key)", media_type=MediaType.TEXT)
    async def metrics(self, runtime: NamedDependency[Runtime]) -> Response[bytes]:
        return Response(runtime.metrics.exposition(), media_type="text/plain; version=0.0.4; charset=utf-8")
