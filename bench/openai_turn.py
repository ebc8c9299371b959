"""What the OpenAI-compatible layer costs, with an instant model:

- a turn through POST /v1/chat/completions (a named conversation, only the new
  message sent) against the same turn through POST /threads/{id}/runs/wait;
- a client that resends the whole history each turn, once the conversation
  is 50 turns long, against one that sends only the new message;
- the web chat's page weight: every byte a browser loads to show it.

    python -m bench.openai_turn [--turns 200]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.common import bench_settings, instant_model, percentile, summary
from tests.support.app import serve_app

LONG_CONVERSATION = 50
WEB_ASSETS = ("/", "/web/app.js", "/web/style.css", "/web/icon.svg", "/web/marked.esm.js", "/web/purify.min.js")


async def timed(calls: int, call) -> list[float]:
    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - started)
    return samples


async def main(turns: int) -> None:
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            client = app.client
            bearer = {"Authorization": f"Bearer {app.admin_key}"}
            message = {"role": "user", "content": "hello there"}

            tid = (await client.post("/threads", json={})).json()["thread_id"]

            async def native() -> None:
                body = {"assistant_id": "agent", "input": {"messages": [message]}}
                assert (await client.post(f"/threads/{tid}/runs/wait", json=body)).status_code == 200

            def openai_call(conversation: str, messages: list[dict]):
                async def call() -> dict:
                    response = await client.post(
                        "/v1/chat/completions",
                        json={"model": "agent", "messages": messages},
                        headers=bearer | {"X-Conversation-Id": conversation},
                    )
                    assert response.status_code == 200, response.text
                    return response.json()

                return call

            await timed(20, native)
            native_s = await timed(turns, native)
            new_only = openai_call("bench-new-only", [message])
            await timed(20, new_only)
            openai_s = await timed(turns, new_only)

            # Two conversations grown to LONG_CONVERSATION turns: one client sends
            # only its new message, the other the whole history every time.
            history: list[dict] = []
            for _ in range(LONG_CONVERSATION):
                answer = await openai_call("bench-history", [*history, message])()
                history += [message, {"role": "assistant", "content": answer["choices"][0]["message"]["content"]}]
                await openai_call("bench-long-new-only", [message])()
            long_new_only = await timed(turns // 4, openai_call("bench-long-new-only", [message]))
            resent = []
            for _ in range(turns // 4):
                started = time.perf_counter()
                answer = await openai_call("bench-history", [*history, message])()
                resent.append(time.perf_counter() - started)
                history += [message, {"role": "assistant", "content": answer["choices"][0]["message"]["content"]}]

            page_bytes = sum([len((await client.get(path)).content) for path in WEB_ASSETS])

    print(summary("native runs/wait", native_s))
    print(summary("/v1/chat/completions", openai_s))
    print(f"ratio /v1 / native: p50 {percentile(openai_s, 50) / percentile(native_s, 50):.2f}x")
    print(summary(f"{LONG_CONVERSATION}+ turns, new message only", long_new_only))
    print(summary(f"{LONG_CONVERSATION}+ turns, whole history", resent))
    print(f"ratio whole history / new only: p50 {percentile(resent, 50) / percentile(long_new_only, 50):.2f}x")
    print(f"web chat page weight: {page_bytes / 1024:.1f} KiB in {len(WEB_ASSETS)} files, none from elsewhere")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200)
    asyncio.run(main(parser.parse_args().turns))
