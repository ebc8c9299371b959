"""schemathesis hooks for tests/test_openapi_fuzz.py, loaded through SCHEMATHESIS_HOOKS.

A run that ``after_seconds`` delays holds every call that waits for it (``wait``,
``stream``, ``join``, following its stream, which the fuzzer reaches through the
run's Location header) until it is due, and the fuzzer waits 30 s for an answer:
a run due in a day is not a fault of the API, but the fuzzer would report it as
one. So the fuzzer's runs are due within a second, except where a delay is
refused (a call that waits for its run may delay it at most 60 s: that 422 is
still fuzzed)."""

from __future__ import annotations

import schemathesis

from appliance.api.controllers.runs import HELD_DELAY_S

DUE_WITHIN_S = 1


@schemathesis.hook
def before_call(context, case, kwargs) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    delay = body.get("after_seconds")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay <= DUE_WITHIN_S:
        return
    held = case.operation.path.endswith(("/wait", "/stream"))
    if not (held and delay > HELD_DELAY_S):
        body["after_seconds"] = DUE_WITHIN_S
