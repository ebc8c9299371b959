"""The server sets Python's collector for many turns in flight once it has
started (appliance/collector.py; bench.stream_load and bench.collector_cost measure what it saves)."""

from __future__ import annotations

import gc

from appliance.collector import MIDDLE, OLD, YOUNG


async def test_a_started_server_has_frozen_its_startup_and_collects_less_often(scripted_app):
    assert (await scripted_app.client.get("/healthz")).status_code == 200
    assert gc.get_threshold() == (YOUNG, MIDDLE, OLD)
    assert YOUNG > 700  # Python's default, under which a collection ran about every turn
    assert gc.get_freeze_count() > 0
