"""What the benchmarks share: a fresh database on the same server the tests
use, an instant model, and percentile arithmetic."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from appliance.llm.provider import LanguageModel
from appliance.settings import Settings, load_settings
from tests.support.process import NO_RATE_LIMITS
from tests.support.scripted_model import scripted_language_model
from tests.support.services import Databases, postgres_server


class InstantChatModel(BaseChatModel):
    """Answers at once, so a benchmark measures everything but the model."""

    @property
    def _llm_type(self) -> str:
        return "instant"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content="ok"))])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        return self._generate(messages)


def instant_model() -> LanguageModel:
    return scripted_language_model(InstantChatModel(), name="instant")


@contextmanager
def bench_settings(**extra: str) -> Iterator[Settings]:
    """Settings on a database of their own. One key sends a whole benchmark's
    load, so the rate limits are off (bench.rate_limit_cost measures their cost)."""
    with tempfile.TemporaryDirectory() as tmp, postgres_server(Path(tmp)) as server:
        databases = Databases(server)
        try:
            env = {
                "APPLIANCE_DATA_DIR": tmp,
                "APPLIANCE_DATABASE_URL": databases.create(),
                "APPLIANCE_LOG_LEVEL": "warning",
                **{f"APPLIANCE_{k.upper()}": v for k, v in (NO_RATE_LIMITS | extra).items()},
            }
            yield load_settings(env=env)
        finally:
            databases.drop_all()


# PostgreSQL's autovacuum refreshes the planner's statistics as tables grow,
# which also replaces the plans connections cached while the tables were
# empty. Its nap is a minute, longer than a bench takes to fill a long thread,
# so a bench does what it would have done by then, every ANALYZE_EVERY turns.
ANALYZE_EVERY = 100


async def keep_statistics(pool, turn: int) -> None:
    """Autovacuum's ANALYZE, at the turns it would have come by."""
    if turn % ANALYZE_EVERY == 0:
        async with pool.connection() as conn:
            await conn.execute("ANALYZE")


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(name: str, seconds: list[float]) -> str:
    return (
        f"{name:<34} n={len(seconds):<5} p50={percentile(seconds, 50) * 1000:7.2f} ms  "
        f"p99={percentile(seconds, 99) * 1000:7.2f} ms  mean={statistics.fmean(seconds) * 1000:7.2f} ms  "
        f"rate={len(seconds) / sum(seconds):7.1f}/s"
    )


# Turns ``timed`` runs before it times.
WARM_UP_TURNS = 20


async def timed(turns: int, turn: Callable[[], Awaitable[object]]) -> tuple[list[float], float]:
    """Each turn's seconds, after WARM_UP_TURNS to warm up, and the CPU a turn (this process's)."""
    for _ in range(WARM_UP_TURNS):
        await turn()
    seconds, spent = [], time.process_time()
    for _ in range(turns):
        started = time.perf_counter()
        await turn()
        seconds.append(time.perf_counter() - started)
    return seconds, (time.process_time() - spent) / turns


def _cpu_of(stat: str) -> float:
    """The CPU seconds (user and system) in a process's /proc stat line."""
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """The CPU a process has used, from /proc."""
    return _cpu_of(Path(f"/proc/{pid}/stat").read_text())


def postgres_cpu_seconds() -> float | None:
    """The CPU the PostgreSQL processes on this host have used (from /proc); None when none run here."""
    total, found = 0.0, False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # the process ended meanwhile
            continue
        if stat[stat.index("(") + 1 : stat.rindex(")")] in ("postgres", "postmaster"):
            found = True
            total += _cpu_of(stat)
    return total if found else None
