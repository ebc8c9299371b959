"""``appliance migrate``: bring the database schema up to date, and say whether it changed."""

from __future__ import annotations

import asyncio

from appliance.settings import Settings
from appliance.store.checkpointer import PooledPostgresSaver
from appliance.store.database import database_in_use, open_pool
from appliance.store.migrations import migrate as apply_migrations


async def _migrate(settings: Settings) -> str:
    with database_in_use(settings) as (url, _):
        pool = await open_pool(url, min_size=1, max_size=2)
        try:
            result = await apply_migrations(pool)
            await PooledPostgresSaver(pool).setup()  # LangGraph's checkpoint tables
        finally:
            await pool.close()
    if result.before == result.after:
        return f"schema up to date (version {result.after})"
    return f"schema migrated from version {result.before} to {result.after}"


def migrate(settings: Settings) -> int:
    print(asyncio.run(_migrate(settings)))
    return 0
