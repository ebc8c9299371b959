"""What a turn sends PostgreSQL, counted: each statement costs the client
some 0.1-0.2 ms of CPU and, outside a pipeline, a wait on the server.

A `runs/wait` turn on a thread that has a conversation, with the built-in
assistant (its knowledge bases: every one the tenant has), sends nine: the
key's admission; the thread with the tenant's knowledge bases (two statements
until 2026-12-07); the run's queueing (the tenant's lock, the thread's, the
run: one pipeline); the thread's last checkpoint, and the turn's checkpoints;
the run's end (the thread's lock and the run's). The conversation itself is
not read back: the turn before, in this process, left its final state as the
window of its last checkpoint (two statements until 2026-12-07, the walk back
to the window kept and the writes since).
"""

from __future__ import annotations

import psycopg

from tests.support.turns import new_thread, turn

WAIT_TURN_STATEMENTS = 9


async def test_a_wait_turn_sends_nine_statements(scripted_app, monkeypatch):
    thread_id = await new_thread(scripted_app.client)
    await turn(scripted_app.client, thread_id, "hello")
    sent: list[str] = []
    execute = psycopg.AsyncCursor.execute

    async def noted(cursor, query, *args, **kwargs):
        sent.append(" ".join(str(query).split())[:80])
        return await execute(cursor, query, *args, **kwargs)

    monkeypatch.setattr(psycopg.AsyncCursor, "execute", noted)
    counts = []
    for text in ("one", "two", "three"):
        sent.clear()
        await turn(scripted_app.client, thread_id, text)
        counts.append((len(sent), list(sent)))
    # The fewest of three: the process's own upkeep (a heartbeat) may fall within one.
    fewest, statements = min(counts)
    assert fewest == WAIT_TURN_STATEMENTS, "\n".join(statements)
