"""Every statement a turn sends is read once per process. psycopg finds a
statement's ``%(name)s`` placeholders with a regular expression and keeps
what it found, but only for a statement of at most 4 KB with at most 50
parameters: a larger one is read again at every execution. The run's
queueing was one such until 2026-12-07, some 0.2-0.4 ms of CPU a turn
(``store.database.compact_statement``)."""

from __future__ import annotations

import psycopg._queries as queries
import pytest

from tests.support.turns import new_thread, stream, turn, user


async def turns_of_each_kind(app) -> None:
    """A turn waited for, a streamed one, a chat completion (a stateless run)."""
    thread_id = await new_thread(app.client)
    await turn(app.client, thread_id, "hello there")
    events = await stream(app.client, thread_id, user("and again") | {"stream_mode": ["messages-tuple", "values"]})
    assert events[-1][0] == "values", events
    response = await app.client.post(
        "/v1/chat/completions", json={"model": "agent", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert response.status_code == 200, response.text


async def test_no_statement_of_a_turn_is_read_again(scripted_app, monkeypatch: pytest.MonkeyPatch):
    await turns_of_each_kind(scripted_app)  # each statement read for the first time, and kept
    read = {"kept": 0, "again": 0}
    kept, uncached = queries._query2pg, queries._query2pg_nocache

    def counted(which, read_it):
        def reading(query, encoding):
            read[which] += 1
            return read_it(query, encoding)

        return reading

    monkeypatch.setattr(queries, "_query2pg", counted("kept", kept))
    monkeypatch.setattr(queries, "_query2pg_nocache", counted("again", uncached))
    await turns_of_each_kind(scripted_app)
    assert read["kept"] > 10  # the turns' statements did pass here
    assert read["again"] == 0
