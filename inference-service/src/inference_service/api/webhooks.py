"""The webhook operations: subscriptions, the callback secret, a job's deliveries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from starlette.responses import Response

from inference_service.api.problems import Problem
from inference_service.api.security import owner_of
from inference_service.domain.clock import iso
from inference_service.domain.webhook_urls import InvalidWebhookUrl, TargetPolicy
from inference_service.domain.webhooks import Delivery, EventsWanted, Subscription
from inference_service.service_layer.webhooks import WebhookNotFound, Webhooks

Answer = tuple[Any, int, dict[str, str]]
JSON = {"Content-Type": "application/json"}


class WebhookServices(Protocol):
    @property
    def webhooks(self) -> Webhooks: ...


def checked_target(
    policy: TargetPolicy, target: dict[str, Any], pointer: str
) -> tuple[str, EventsWanted]:
    """The URL and events of a `WebhookTarget`, or a 422 naming the field."""
    url = str(target["url"])
    try:
        policy.check_url(url)
    except InvalidWebhookUrl as exc:
        raise invalid_url(str(exc), pointer + "/url") from None
    return url, EventsWanted(target.get("events", EventsWanted.TERMINAL.value))


def invalid_url(detail: str, pointer: str) -> Problem:
    return Problem(
        422,
        f"not a webhook target: {detail}",
        "invalid-webhook-url",
        errors=[{"detail": detail, "pointer": pointer}],
    )


@dataclass(eq=False)
class WebhooksApi:
    services: WebhookServices
    base_path: str

    @property
    def webhooks(self) -> Webhooks:
        return self.services.webhooks

    async def create_webhook(self, body: dict[str, Any], user: str | None = None) -> Answer:
        url, events = checked_target(self.webhooks.policy, body, "")
        subscription = await self.webhooks.subscribe(owner_of(user), url, events)
        headers = {**JSON, "Location": f"{self.base_path}/webhooks/{subscription.id}"}
        return {**webhook_view(subscription), "secret": subscription.secret}, 201, headers

    async def list_webhooks(self, user: str | None = None) -> Answer:
        found = await self.webhooks.subscriptions(owner_of(user))
        return {"items": [webhook_view(s) for s in found]}, 200, JSON

    async def delete_webhook(self, webhook_id: str, user: str | None = None) -> Response:
        try:
            await self.webhooks.unsubscribe(owner_of(user), webhook_id)
        except WebhookNotFound as exc:
            raise Problem(404, str(exc), "webhook-not-found") from None
        return Response(status_code=204)

    async def get_secret(self, user: str | None = None) -> Answer:
        return {"secret": await self.webhooks.secret(owner_of(user))}, 200, JSON

    async def job_deliveries(self, job_id: str, user: str | None = None) -> Answer:
        callback, deliveries = await self.webhooks.job_deliveries(owner_of(user), job_id)
        body = {
            "callback": {"url": callback[0], "events": callback[1].value} if callback else None,
            "items": [delivery_view(d) for d in deliveries],
        }
        return body, 200, JSON


def webhook_view(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "url": subscription.url,
        "events": subscription.events.value,
        "created_at": iso(subscription.created_at),
    }


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "target": delivery.target,
        "state": delivery.state.value,
        "attempts": [
            {
                "attempt": a.attempt,
                "at": iso(a.at),
                "duration_ms": a.duration_ms,
                "status_code": a.status_code,
                "error": a.error,
            }
            for a in delivery.attempts
        ],
        "next_attempt_at": iso(delivery.next_attempt_at) if delivery.next_attempt_at else None,
        "updated_at": iso(delivery.updated_at),
    }
