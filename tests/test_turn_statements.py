"""What a turn sends PostgreSQL, counted: each statement costs the client
some 0.1-0.2 ms of CPU and, outside a pipeline, a wait on the server.

A `runs/wait` turn on a thread that has a conversation, with the built-in
assistant (its knowledge bases: every one the tenant has), sends nine: the
key's admission; the thread with the tenant's knowledge bases (two statements
until 2026-12-07); the run's queueing (the limits' lock, the thread's, the
run: one pipeline); the thread's last checkpoint, and the turn's checkpoints;
the run's end (the thread's lock and the run's). The conversation itself is
not read back: the turn before, in this process, left its final state as the
window of its last checkpoint (two statements until 2026-12-07, the walk back
to the window kept and the writes since). The first turn of a thread sends
eight: its queueing saw the thread had no checkpoint, and the run starting
there and then does not look for one.
"""

from __future__ import annotations

import psycopg

from tests.support.turns import new_thread, turn

WAIT_TURN_STATEMENTS = 9
# The first turn of a thread: its queueing saw it has no checkpoint, so the run does not look for one.
FIRST_TURN_STATEMENTS = 8


def counting(monkeypatch) -> list[str]:
    """The statements sent from now on (their first 80 characters)."""
    sent: list[str] = []
    execute = psycopg.AsyncCursor.execute

    async def noted(cursor, query, *args, **kwargs):
        sent.append(" ".join(str(query).split())[:80])
        return await execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", noted)
    return sent


async def fewest(sent: list[str], turns) -> tuple[int, list[str]]:
    """The fewest statements of three turns (``turns()`` takes one), with them:
    the process's own upkeep (a heartbeat) may fall within one."""
    counts = []
    for _ in range(3):
        sent.clear()
        await turns()
        counts.append((len(sent), list(sent)))
    return min(counts)


async def test_a_wait_turn_sends_nine_statements(scripted_app, monkeypatch):
    thread_id = await new_thread(scripted_app.client)
    await turn(scripted_app.client, thread_id, "hello")
    sent = counting(monkeypatch)
    count, statements = await fewest(sent, lambda: turn(scripted_app.client, thread_id, "again"))
    assert count == WAIT_TURN_STATEMENTS, "\n".join(statements)


async def test_the_first_turn_of_a_thread_does_not_look_for_its_checkpoint(scripted_app, monkeypatch):
    threads = [await new_thread(scripted_app.client) for _ in range(3)]
    sent = counting(monkeypatch)
    count, statements = await fewest(sent, lambda: turn(scripted_app.client, threads.pop(), "hello"))
    assert count == FIRST_TURN_STATEMENTS, "\n".join(statements)
