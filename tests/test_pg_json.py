"""json and jsonb parameters of the pool's connections are encoded by msgspec
(store/database.py, ``encode_json``) and read back as they were sent."""

from __future__ import annotations

import psycopg
import pytest
from psycopg.types.json import Json, Jsonb

from appliance.store import database
from appliance.store.database import encode_json, open_pool


@pytest.fixture
async def pool(databases):
    pool = await open_pool(databases.create(), min_size=1, max_size=1)
    yield pool
    await pool.close()


VALUES = [
    {"messages": [{"role": "user", "content": "Grüße, 日本語 \\ \" ' \n\t"}], "n": 2**70, "f": 0.1, "ok": True},
    {"nested": {"empty": {}, "list": [], "none": None, "neg": -(2**63)}},
    ["a", 1, 2.5, None, False],
    "just a string",
]


async def test_a_pool_connection_encodes_json_parameters_with_encode_json(pool, monkeypatch):
    encoded: list[object] = []
    msgspec_encode = database._encode_json

    def counted(value):
        encoded.append(value)
        return msgspec_encode(value)

    monkeypatch.setattr(database, "_encode_json", counted)
    async with pool.connection() as conn:
        for value in VALUES:
            for wrapper, cast in ((Jsonb, "jsonb"), (Json, "json")):
                for binary in (True, False):
                    row = await (
                        await conn.execute(f"SELECT %s::{cast} AS v", (wrapper(value),), binary=binary)
                    ).fetchone()
                    assert row["v"] == value
    assert len(encoded) == len(VALUES) * 4  # msgspec's encoder took every one


async def test_what_msgspec_refuses_goes_to_json_dumps_as_before(pool):
    # A lone surrogate: msgspec cannot write it in UTF-8; json.dumps escapes it, and PostgreSQL refuses that.
    assert encode_json({"text": "\udc80"}) == b'{"text": "\\udc80"}'
    async with pool.connection() as conn:
        with pytest.raises(psycopg.DataError):
            await conn.execute("SELECT %s::jsonb", (Jsonb({"text": "\udc80"}),))
