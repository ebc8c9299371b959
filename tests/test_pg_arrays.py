"""Array parameters encoded in one pass (store/arrays.py) reach PostgreSQL as
the lists they are: NULLs, empty values, empty arrays and any text."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg.adapt import PyFormat

from appliance.store import arrays
from appliance.store.arrays import ByteaArray, Int4Array, TextArray, UuidArray


@pytest.fixture(scope="module")
def database_url(databases) -> str:
    return databases.create()


@pytest.mark.parametrize(
    ("array", "cast", "values"),
    [
        (TextArray, "text[]", ["messages", "", None, "Grüße, 日本語 \\ \" ' {a,b}", "NULL"]),
        (TextArray, "text[]", []),
        (ByteaArray, "bytea[]", [b"\x00\xff blob", b"", None, bytes(range(256)) * 40]),
        (Int4Array, "int4[]", [0, -1, 2**31 - 1, -(2**31), 7]),
        (Int4Array, "int4[]", []),
        (UuidArray, "uuid[]", [uuid.UUID(int=0), uuid.uuid4(), None, uuid.UUID(int=2**128 - 1)]),
        (UuidArray, "uuid[]", []),
    ],
)
async def test_an_array_parameter_reads_back_as_the_list_it_was(database_url, array, cast, values):
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        # Encoded in one pass, not by psycopg's list adapter (which would read back the same, slower).
        assert conn.adapters.get_dumper(array, PyFormat.BINARY).__module__ == arrays.__name__
        for binary in (True, False):  # the statement's result format does not matter to the parameter's
            row = await (
                await conn.execute(
                    f"SELECT %s::{cast}, cardinality(%s::{cast})", (array(values), array(values)), binary=binary
                )
            ).fetchone()
            assert row == (values, len(values))


async def test_unnest_takes_the_columns_side_by_side(database_url):
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        rows = await (
            await conn.execute(
                "SELECT * FROM unnest(%s::int4[], %s::text[], %s::bytea[])",
                (Int4Array([-3, 1]), TextArray(["a", None]), ByteaArray([None, b"b"])),
            )
        ).fetchall()
    assert rows == [(-3, "a", None), (1, None, b"b")]
