"""The API against its own description: schemathesis (every phase, stateful
included) with a fixed seed, as a tenant and as an admin. No server error, no
status code the description leaves out, no schema-valid request refused, no
response that contradicts its schema."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import pytest

from appliance.store.audit import Actor

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SCHEMATHESIS = Path(sys.executable).parent / "st"
HOOKS = Path(__file__).parent / "support" / "fuzz_hooks.py"  # the fuzzer's runs are due within a second
# The description's security scheme, so the fuzzer also tries requests without a key.
CONFIG = """
[auth.openapi.apiKey]
api_key = "${FUZZ_API_KEY}"

# A run's webhook is schema-valid whatever its host, but one that does not resolve
# inside the allowed networks cannot be called: 422 naming it, as the description says.
[[operations]]
include-path-regex = "/runs"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", 401, 403, 404, 409, 422, 429, "5xx"]

# The same for a tool server's URL, at registration.
[[operations]]
include-path = "/tool-servers"
checks.positive_data_acceptance.expected-statuses = ["2xx", "3xx", 401, 403, 404, 409, 422, 429, "5xx"]

# OpenAI's rule that a conversation ends with the user's question has no JSON Schema
# keyword (none speaks of an array's last item): a 400 naming messages, in OpenAI's shape.
[[operations]]
include-path = "/v1/chat/completions"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 429, "5xx"]
"""


async def fuzz(url: str, key: str, config: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        str(SCHEMATHESIS),
        "--config-file",
        str(config),
        "run",
        f"{url}/docs/openapi.json",
        "--checks=all",
        # Fixed in CI; FUZZ_SEED and FUZZ_EXAMPLES explore further by hand.
        f"--max-examples={os.environ.get('FUZZ_EXAMPLES', '25')}",
        f"--seed={os.environ.get('FUZZ_SEED', '1')}",
        "--workers=1",  # hypothesis parses lambdas with ast, not thread-safe on CPython 3.11
        "--generation-database=none",
        # Text with a NUL is refused with a 400 naming the field, and the description says so.
        "--generation-allow-x00=true",
        # Hypothesis gives up on a body when it throws away too many drafts (the chat
        # request's tagged messages): a verdict on the generator, not on the API.
        "--suppress-health-check=filter_too_much",
        "--request-timeout=30",
        "--no-color",
        env=os.environ | {"FUZZ_API_KEY": key, "SCHEMATHESIS_HOOKS": str(HOOKS)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return process.returncode, output.decode(errors="replace")


@pytest.fixture(scope="module")
async def fuzzed_app(databases, chroma_url, tmp_path_factory):
    """An appliance of its own: an admin fuzzer creates and revokes keys."""
    from tests.support.app import serve_scripted
    from tests.support.process import NO_RATE_LIMITS

    # The fuzzer's one key sends thousands of requests a minute: rate limits off here
    # (their 429 is in the description; test_rate_limits proves them).
    async with serve_scripted(
        tmp_path_factory.mktemp("fuzzed"), databases.create(), chroma_url, **NO_RATE_LIMITS
    ) as served:
        yield served


@pytest.mark.parametrize("admin", [False, True], ids=["tenant", "admin"])
async def test_the_api_keeps_to_its_openapi_description(fuzzed_app, tmp_path, admin):
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    _, key = await fuzzed_app.runtime.keys.create("fuzz", name="fuzzer", is_admin=admin, actor=Actor.host())
    code, output = await fuzz(fuzzed_app.url, key, config)
    generated = re.search(r"(\d+) generated", output)
    assert generated and int(generated.group(1)) > 1000, output[-3000:]
    assert code == 0, findings(output)


def findings(output: str) -> str:
    """What failed, first: schemathesis's FAILURES and ERRORS sections lead its
    report, and a report's tail alone (the summary) says only how many."""
    headed = re.split(r"^=+ ([A-Z]+) =+$", output, flags=re.MULTILINE)
    sections = dict(zip(headed[1::2], headed[2::2], strict=True))
    found = "".join(f"== {name} ==\n{sections[name][:6000]}\n" for name in ("FAILURES", "ERRORS") if name in sections)
    return found + output[-1500:]


async def test_the_description_names_the_agents_own_nodes(fuzzed_app):
    """interrupt_before, command.goto and as_node are described with the graph's nodes."""
    from appliance.agent.graph import NODES

    assert set(NODES) == set(fuzzed_app.runtime.threads.graph.nodes) - {"__start__"}
    description = (await fuzzed_app.client.get("/docs/openapi.json")).json()
    as_node = description["components"]["schemas"]["ThreadStateUpdate"]["properties"]["as_node"]
    assert {"enum": list(NODES)} in as_node["allOf"][0]["anyOf"]


async def test_a_chat_completion_is_described_as_json_or_as_events_when_streamed(fuzzed_app):
    """`stream: true` answers text/event-stream: the description names both bodies."""
    description = (await fuzzed_app.client.get("/docs/openapi.json")).json()
    answered = description["paths"]["/v1/chat/completions"]["post"]["responses"]["200"]["content"]
    assert set(answered) == {"application/json", "text/event-stream"}
