"""100 requests at once on one thread, under each multitask strategy: the
outcome is exactly what the strategy promises, counted run by run."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.app import model_delay
from tests.support.turns import new_thread, user

pytestmark = pytest.mark.timeout(300)

BURST = 100


@pytest.fixture(scope="module")
async def burst_app(databases, chroma_url, tmp_path_factory):
    from tests.support.app import serve_scripted
    from tests.support.process import NO_RATE_LIMITS

    # One key sends every burst: its rate limits are off here (test_rate_limits has them).
    async with serve_scripted(
        tmp_path_factory.mktemp("burst"), databases.create(), chroma_url, delay=0, **NO_RATE_LIMITS
    ) as served:
        yield served


async def burst(app, tid: str, strategy: str) -> list:
    """Send BURST background runs at once; the responses, in the order sent."""
    bodies = [user(f"message {i}") | {"multitask_strategy": strategy} for i in range(BURST)]
    return await asyncio.gather(*(app.client.post(f"/threads/{tid}/runs", json=b) for b in bodies))


async def all_runs(app, tid: str) -> list[dict]:
    """The thread's runs, oldest first."""
    runs = (await app.client.get(f"/threads/{tid}/runs", params={"limit": 1000})).json()
    return runs[::-1]


async def settle(app, tid: str) -> None:
    for _ in range(600):
        runs = await all_runs(app, tid)
        if all(r["status"] not in ("pending", "running") for r in runs):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("runs did not end")


def said(run: dict) -> str:
    return run["kwargs"]["input"]["messages"][0]["content"]


async def messages(app, tid: str) -> list[tuple[str, str]]:
    """The whole conversation: its archived turns too (a hundred turns outgrow the state's window)."""
    page = (await app.client.get(f"/threads/{tid}/messages", params={"limit": 1000})).json()
    return [(m["type"], m["content"]) for m in page["messages"]]


async def test_reject_accepts_one_and_refuses_ninety_nine(burst_app):
    with model_delay(burst_app, 0.2):  # the first run outlasts the burst
        tid = await new_thread(burst_app.client)
        responses = await burst(burst_app, tid, "reject")
        await settle(burst_app, tid)
    codes = [r.status_code for r in responses]
    assert codes.count(200) == 1 and codes.count(409) == BURST - 1
    [run] = await all_runs(burst_app, tid)
    assert run["status"] == "success"
    assert [kind for kind, _ in await messages(burst_app, tid)] == ["human", "ai"]


async def test_enqueue_runs_all_hundred_one_at_a_time_first_in_first_out(burst_app):
    tid = await new_thread(burst_app.client)
    responses = await burst(burst_app, tid, "enqueue")
    assert [r.status_code for r in responses] == [200] * BURST
    await settle(burst_app, tid)
    runs = await all_runs(burst_app, tid)
    assert len(runs) == BURST and {r["status"] for r in runs} == {"success"}
    history = await messages(burst_app, tid)
    assert [kind for kind, _ in history] == ["human", "ai"] * BURST
    # The thread holds the turns in the order the queue accepted them.
    assert [text for kind, text in history if kind == "human"] == [said(r) for r in runs]


async def test_interrupt_leaves_one_finished_run_the_last_and_interrupts_the_other_ninety_nine(burst_app):
    with model_delay(burst_app, 0.2):  # the first run outlasts the burst
        tid = await new_thread(burst_app.client)
        responses = await burst(burst_app, tid, "interrupt")
        await settle(burst_app, tid)
    assert [r.status_code for r in responses] == [200] * BURST
    runs = await all_runs(burst_app, tid)
    statuses = [r["status"] for r in runs]
    assert statuses == ["interrupted"] * (BURST - 1) + ["success"]
    history = await messages(burst_app, tid)
    # One answer, to the last run; interrupted runs that had started keep their question.
    assert [kind for kind, _ in history].count("ai") == 1 and history[-1][0] == "ai"
    asked = [text for kind, text in history if kind == "human"]
    assert asked[-1] == said(runs[-1])
    order = [said(r) for r in runs]
    assert [order.index(t) for t in asked] == sorted(order.index(t) for t in asked)


async def test_rollback_leaves_only_the_last_run_and_its_turn(burst_app):
    with model_delay(burst_app, 0.2):  # the first run outlasts the burst
        tid = await new_thread(burst_app.client)
        responses = await burst(burst_app, tid, "rollback")
        await settle(burst_app, tid)
    assert [r.status_code for r in responses] == [200] * BURST
    [run] = await all_runs(burst_app, tid)
    assert run["status"] == "success"
    gone = [r.json()["run_id"] for r in responses if r.json()["run_id"] != run["run_id"]]
    assert len(gone) == BURST - 1
    for run_id in gone[:10]:
        assert (await burst_app.client.get(f"/threads/{tid}/runs/{run_id}")).status_code == 404
    history = await messages(burst_app, tid)
    assert [kind for kind, _ in history] == ["human", "ai"] and history[0][1] == said(run)
