"""The turn lane (appliance/pacing.py) on its own: how many turns work at once,
who goes next, and that a place is never lost, whatever a turn does."""

from __future__ import annotations

import asyncio

import pytest

from appliance.pacing import Lane, aside, hand_over


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_at_most_width_turns_work_at_once_and_the_rest_start_in_order_of_arrival():
    lane, started, at_work, most = Lane(2), [], 0, 0

    async def turn(n: int) -> None:
        nonlocal at_work, most
        async with lane.turn():
            started.append(n)
            at_work += 1
            most = max(most, at_work)
            await settle()
            at_work -= 1

    await asyncio.gather(*(turn(n) for n in range(8)))
    assert most == 2
    assert started == list(range(8))
    assert lane.busy == 0 and lane.waiting == 0


async def test_runs_go_ahead_of_the_line():
    lane, order = Lane(1), []
    release = asyncio.Event()

    async def holder() -> None:
        async with lane.turn():
            await release.wait()

    async def turn(name: str, ahead: bool) -> None:
        async with lane.turn(ahead=ahead):
            order.append(name)

    tasks = [asyncio.create_task(holder())]
    await settle()
    for name, ahead in (("request 1", False), ("request 2", False), ("run 1", True), ("run 2", True)):
        tasks.append(asyncio.create_task(turn(name, ahead)))
        await settle()
    assert lane.waiting == 4
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["run 1", "run 2", "request 1", "request 2"]


async def test_a_turn_waiting_aside_frees_its_place_and_comes_back_at_the_end_of_the_line():
    lane, order = Lane(1), []
    model_answered, first_done = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with lane.turn(ahead=True) as ticket:
            order.append("run starts")
            async with aside():
                assert not ticket.held
                await model_answered.wait()
            assert ticket.held
            order.append("run ends")

    async def request(name: str, hold: asyncio.Event | None = None) -> None:
        async with lane.turn():
            order.append(name)
            if hold is not None:
                await hold.wait()

    running = asyncio.create_task(run())
    await settle()
    first = asyncio.create_task(request("request 1", first_done))
    await settle()
    assert order == ["run starts", "request 1"]  # the place was free while the run waited aside
    second = asyncio.create_task(request("request 2"))  # came before the model answered
    await settle()
    model_answered.set()
    await settle()
    third = asyncio.create_task(request("request 3"))  # came after
    await settle()
    first_done.set()
    await asyncio.gather(running, first, second, third)
    assert order == ["run starts", "request 1", "request 2", "run ends", "request 3"]


async def test_a_block_that_fails_aside_does_not_wait_to_come_back():
    lane = Lane(1)
    blocker_in, release = asyncio.Event(), asyncio.Event()

    async def blocker() -> None:
        async with lane.turn():
            blocker_in.set()
            await release.wait()

    with pytest.raises(RuntimeError):
        async with lane.turn(ahead=True) as ticket:
            async with aside():
                held = asyncio.create_task(blocker())
                await blocker_in.wait()  # the lane is full now
                raise RuntimeError("the model failed")
    # The failure reached the caller at once, though the lane was full: it did not queue to come back.
    assert not ticket.held and lane.busy == 1
    release.set()
    await held
    assert lane.busy == 0


async def test_parallel_branches_of_one_turn_aside_at_once_hold_one_place():
    lane = Lane(1)
    async with lane.turn(ahead=True) as ticket:

        async def branch(seconds: float) -> None:
            async with aside():
                await asyncio.sleep(seconds)

        await asyncio.gather(branch(0.01), branch(0.02), branch(0.0))
        assert ticket.held and lane.busy == 1
    assert lane.busy == 0 and lane.waiting == 0


async def test_a_turn_cancelled_in_line_leaves_it_and_a_place_handed_over_as_it_left_is_passed_on():
    lane = Lane(1)
    release = asyncio.Event()

    async def holder() -> None:
        async with lane.turn():
            await release.wait()

    async def waiter() -> None:
        async with lane.turn():
            await asyncio.sleep(0)

    holding = asyncio.create_task(holder())
    await settle()
    gone = asyncio.create_task(waiter())
    await settle()
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert lane.waiting == 0

    handed = asyncio.create_task(waiter())
    after = asyncio.create_task(waiter())
    await settle()
    release.set()
    await asyncio.sleep(0)  # the holder leaves and hands its place to ``handed``
    handed.cancel()  # cancelled before it could take the place up
    await asyncio.gather(holding, handed, after, return_exceptions=True)
    assert after.done() and not after.cancelled()
    assert lane.busy == 0 and lane.waiting == 0


async def test_hand_over_gives_the_place_back_before_the_request_ends():
    lane = Lane(1)
    async with lane.turn() as ticket:
        hand_over()
        assert not ticket.held and lane.busy == 0
        async with lane.turn(ahead=True):  # the run the request made gets in at once
            assert lane.busy == 1
    assert lane.busy == 0


async def test_width_0_sets_no_limit():
    lane, at_work, most = Lane(0), 0, 0

    async def turn() -> None:
        nonlocal at_work, most
        async with lane.turn():
            at_work += 1
            most = max(most, at_work)
            await settle()
            at_work -= 1

    await asyncio.gather(*(turn() for _ in range(20)))
    assert most == 20 and lane.waiting == 0


async def test_outside_any_turn_aside_and_hand_over_do_nothing():
    async with aside():
        pass
    hand_over()
