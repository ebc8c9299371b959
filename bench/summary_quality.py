"""What the embedded model (SmolLM2-135M) keeps when it folds turns into the
running summary. A conversation states facts; the context budget is small so
folding starts early; the script prints each summary and which facts survive.

    python -m bench.summary_quality
"""

from __future__ import annotations

import asyncio

from appliance.llm.provider import build_language_model
from appliance.settings import load_settings
from bench.common import bench_settings
from tests.support.app import serve_app

FACTS = {
    "Ada": "My name is Ada.",
    "Lyon": "I live in Lyon.",
    "42": "I keep 42 beehives.",
    "Tuesday": "The honey market is on Tuesday.",
    "Pixel": "My dog is called Pixel.",
    "green": "My favourite colour is green.",
}


async def main() -> None:
    with bench_settings(context_token_budget="256", summary_max_tokens="96", max_answer_tokens="48") as settings:
        model = build_language_model(load_settings(env={}))
        async with serve_app(settings, model) as app:
            tid = (await app.client.post("/threads", json={})).json()["thread_id"]
            body = lambda text: {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": text}]}}  # noqa: E731
            summaries: list[str] = []
            for sentence in [*FACTS.values(), "Tell me a short joke.", "What should I plant for bees?"]:
                values = (await app.client.post(f"/threads/{tid}/runs/wait", json=body(sentence))).json()
                if values.get("summary") and (not summaries or summaries[-1] != values["summary"]):
                    summaries.append(values["summary"])
            for n, text in enumerate(summaries, 1):
                print(f"summary {n}: {text!r}")
            final = summaries[-1] if summaries else ""
            kept = [fact for fact in FACTS if fact.lower() in final.lower()]
            # Folded messages are archived (a thread from before the archive counts them in folded).
            folded = values.get("archived", 0) + values.get("folded", 0)
            print(f"messages folded: {folded}; facts kept in the last summary: {kept or 'none'} of {list(FACTS)}")


if __name__ == "__main__":
    asyncio.run(main())
