"""What POST /v1/embeddings costs over the model alone: texts a second through
OpenAI's client (base64, its default) and as float JSON, against the same
batches embedded in-process by the appliance's embedder.

    python -m bench.openai_embeddings [--rounds 20] [--batch 100]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time

import httpx
import openai

from bench.common import bench_settings, instant_model
from tests.support.app import serve_app

WORDS = ("warehouse pallets invoice holiday laptop printer policy contract deadline meeting budget "
         "customer shipment refund password network badge parking training safety report").split()  # fmt: skip


def batches(rounds: int, size: int) -> list[list[str]]:
    rng = random.Random(7)  # the same texts for every path
    return [
        [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 60))) for _ in range(size)] for _ in range(rounds)
    ]


async def rate(work: list[list[str]], embed) -> float:
    await embed(work[0])  # warm
    started = time.perf_counter()
    for batch in work:
        await embed(batch)
    return sum(len(b) for b in work) / (time.perf_counter() - started)


async def main(rounds: int, size: int) -> None:
    work = batches(rounds, size)
    with bench_settings() as settings:
        async with serve_app(settings, instant_model()) as app:
            embedder = app.runtime.knowledge.retriever.embedder
            client = openai.AsyncOpenAI(
                base_url=f"{app.url}/v1",
                api_key=app.admin_key,
                max_retries=0,
                http_client=httpx.AsyncClient(trust_env=False, timeout=120),
            )

            async def through_client(batch: list[str]) -> None:
                response = await client.embeddings.create(model="all-minilm-l6-v2", input=batch)
                assert len(response.data) == len(batch)

            async def as_float(batch: list[str]) -> None:
                body = {"model": "all-minilm-l6-v2", "input": batch, "encoding_format": "float"}
                response = await client.post("/embeddings", cast_to=httpx.Response, body=body)
                assert response.status_code == 200

            alone = await rate(work, embedder.aembed)
            via_client = await rate(work, through_client)
            via_float = await rate(work, as_float)
    print(f"{rounds} batches of {size} texts (8-60 words each)")
    print(f"model alone (in process)         {alone:8.1f} texts/s")
    print(f"openai client, base64 (default)  {via_client:8.1f} texts/s  ratio {via_client / alone:.2f}")
    print(f"HTTP, float JSON                 {via_float:8.1f} texts/s  ratio {via_float / alone:.2f}")
    print("target: ratio >= 0.8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.batch))
