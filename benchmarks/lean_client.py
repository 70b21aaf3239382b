"""A load client that costs the server side as little as can be: one asyncio event loop
(aiohttp), ``clients`` concurrent requests on kept-alive connections, no thread per
client. Used by the small deliveries' benchmark, where a 50-thread ``requests`` client
took CPU from both sides on a 2-core machine."""

from __future__ import annotations

import asyncio
import time

import aiohttp

from tests.support.load import AUTH, Delivery, Outcome


def send_all_async(urls: list[str], deliveries: list[Delivery], clients: int = 50) -> Outcome:
    """POST every delivery from ``clients`` concurrent tasks (the URLs in turn); one try each."""
    return asyncio.run(_send_all(urls, deliveries, clients))


async def _send_all(urls: list[str], deliveries: list[Delivery], clients: int) -> Outcome:
    outcome = Outcome()
    queue = [(urls[index % len(urls)], delivery) for index, delivery in enumerate(deliveries)][::-1]
    headers = {"Authorization": AUTH, "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def client() -> None:
            while queue:
                url, delivery = queue.pop()
                started = time.monotonic()
                try:
                    async with session.post(url, data=delivery.body) as response:
                        answer = await response.json(content_type=None)
                        status = response.status
                except (aiohttp.ClientError, ValueError) as exc:
                    status, answer = 0, {}
                    outcome.connection_errors.append(f"{type(exc).__name__}: {str(exc)[:200]}")
                outcome.latencies.append(time.monotonic() - started)
                outcome.statuses[status] = outcome.statuses.get(status, 0) + 1
                if status in (200, 202) and isinstance(answer, dict) and "delivery_id" in answer:
                    outcome.acknowledged[delivery.request_id] = answer["delivery_id"]
                else:
                    outcome.unanswered.append(delivery.request_id)

        started = time.monotonic()
        await asyncio.gather(*(client() for _ in range(clients)))
        outcome.seconds = time.monotonic() - started
    return outcome
