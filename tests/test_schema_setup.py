"""Several app hosts starting at once against one new database: the schema
(the appliance's migrations and LangGraph's checkpoint tables) is created once,
and none of them fails on a CREATE TABLE race."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psycopg

from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.database import open_pool
from appliance.store.migrations import MIGRATIONS, migrate


async def test_hosts_starting_together_create_the_schema_once(databases):
    for _ in range(3):
        url = databases.create()
        pools = [await open_pool(url, min_size=2, max_size=2) for _ in range(6)]
        try:
            # LangGraph's tables first, as in the race the droplet test met, then ours.
            await asyncio.gather(*(PooledPostgresSaver(pool).setup() for pool in pools))
            results = await asyncio.gather(*(migrate(pool) for pool in pools))
        finally:
            await asyncio.gather(*(pool.close() for pool in pools))
        assert sorted(results) == [(0, len(MIGRATIONS))] + [(len(MIGRATIONS), len(MIGRATIONS))] * 5
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM appliance_migrations").fetchone()[0] == len(MIGRATIONS)
            assert conn.execute("SELECT to_regclass('checkpoint_blobs') IS NOT NULL").fetchone()[0]


def test_migrate_says_whether_it_changed_anything(databases, tmp_path):
    env = {"APPLIANCE_DATABASE_URL": databases.create(), "APPLIANCE_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    appliance = str(Path(sys.executable).with_name("appliance"))
    first = subprocess.run([appliance, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    again = subprocess.run([appliance, "migrate"], env=env, capture_output=True, text=True, timeout=120)
    assert first.stdout.strip() == f"schema migrated from version 0 to {len(MIGRATIONS)}", first.stderr
    assert again.stdout.strip() == f"schema up to date (version {len(MIGRATIONS)})", again.stderr
