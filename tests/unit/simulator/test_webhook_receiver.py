"""The demo's receiver: a verified delivery is handed over once, a forged one refused."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from standardwebhooks import Webhook

from simulator.webhook_receiver import WebhookReceiver

SECRET = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldY"


def signed(body: str, webhook_id: str, secret: str = SECRET) -> dict[str, str]:
    at = datetime.now(UTC)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, at, body),
    }


def test_verified_once_and_forged_refused() -> None:
    async def scenario() -> tuple[list[int], int, int]:
        body = '{"type": "io.cvinference.job.completed.v1", "subject": "j"}'
        async with WebhookReceiver(SECRET) as receiver, httpx.AsyncClient() as http:
            statuses = [
                (await http.post(receiver.url, content=body, headers=headers)).status_code
                for headers in (
                    signed(body, "msg_1"),
                    signed(body, "msg_1"),  # a repeat
                    signed(body, "msg_2", "whsec_" + "WFlaWFlaWFlaWFlaWFlaWFlaWFla"),
                )
            ]
            return statuses, receiver.deliveries.qsize(), receiver.refused

    statuses, kept, refused = asyncio.run(scenario())
    assert statuses == [204, 204, 401]
    assert (kept, refused) == (1, 1)
