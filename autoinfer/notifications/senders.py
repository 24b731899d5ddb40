"""Delivery targets: a signed webhook (Standard Webhooks) or an SQS queue.

Each target type owns a sender built by `SENDERS[type](target, stores, resolve_secret)`;
`send` raises DeliveryError when the attempt did not get through (the loop retries it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from standardwebhooks import Webhook

from autoinfer.db import utcnow
from autoinfer.errors import AutoInferError, ConfigError
from autoinfer.notifications.config import SqsTarget, WebhookTarget

if TYPE_CHECKING:
    from autoinfer.config import StoreConfig

SECRET_PREFIX = "whsec_"


class DeliveryError(AutoInferError):
    """One delivery attempt failed: the target was unreachable, timed out or said no."""


@dataclass(frozen=True)
class Outgoing:
    """What a sender sends: the notification's id, type and its fixed body."""

    webhook_id: str
    event_type: str
    body: str


class Sender(Protocol):
    def send(self, message: Outgoing) -> None: ...

    def close(self) -> None: ...


class WebhookSender:
    """POSTs the body with `webhook-id`, `webhook-timestamp` and `webhook-signature`
    (`v1,<base64 HMAC-SHA256 of "id.timestamp.body">`); any 2xx answer is a delivery.

    `secret` is the key itself (`whsec_...`) or a `secret:NAME` reference, resolved at each
    attempt with `resolve_secret`: a stored secret set (or rotated) after the service started
    is used from the next attempt on, and one that is missing fails attempts, not the start.
    """

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], datetime] = utcnow,
        resolve_secret: Callable[[str], str] = str,
        where: str = "webhook",
    ) -> None:
        self.url = url
        self._secret = secret
        self._resolve = resolve_secret
        self._where = where
        self._signers: dict[str, Webhook] = {}
        self._clock = clock
        self._http = httpx.Client(timeout=timeout_s, follow_redirects=False)
        if not secret.startswith("secret:"):
            self.signer()  # an inline key is checked at once

    @classmethod
    def from_config(
        cls,
        target: WebhookTarget,
        stores: Mapping[str, StoreConfig],
        resolve_secret: Callable[[str], str],
    ) -> WebhookSender:
        return cls(
            target.url,
            target.secret,
            timeout_s=target.timeout_s,
            resolve_secret=resolve_secret,
            where=f"notifications.{target.name}",
        )

    def signer(self) -> Webhook:
        """The signer of the secret's current value; ConfigError naming what is wrong."""
        value = self._resolve(self._secret)
        signer = self._signers.get(value)
        if signer is not None:
            return signer
        if not value.startswith(SECRET_PREFIX):
            raise ConfigError(
                f"{self._where}: secret must be a Standard Webhooks key 'whsec_<base64>' "
                "(make one with `autoinfer notifications new-secret`)"
            )
        try:
            signer = Webhook(value)
        except Exception as error:  # noqa: BLE001 - the library's base64 errors vary
            raise ConfigError(
                f"{self._where}: secret is not valid base64 after 'whsec_': {error}"
            ) from None
        self._signers = {value: signer}
        return signer

    def headers(self, message: Outgoing) -> dict[str, str]:
        """The Standard Webhooks headers of one attempt (signed at the attempt's time)."""
        now = self._clock()
        return {
            "content-type": "application/json",
            "user-agent": "autoinfer-webhooks",
            "webhook-id": message.webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.signer().sign(message.webhook_id, now, message.body),
        }

    def send(self, message: Outgoing) -> None:
        try:
            headers = self.headers(message)
        except ConfigError as error:  # e.g. the stored secret is not set yet
            raise DeliveryError(str(error)) from None
        try:
            response = self._http.post(self.url, content=message.body.encode(), headers=headers)
        except httpx.HTTPError as error:
            raise DeliveryError(f"{self.url}: {type(error).__name__}: {error}") from None
        if not 200 <= response.status_code < 300:
            raise DeliveryError(f"{self.url}: answered HTTP {response.status_code}")

    def close(self) -> None:
        self._http.close()


class SqsSender:
    """Sends the body as one SQS message (attributes `webhook-id` and `type`); on a FIFO
    queue the `webhook-id` is also the deduplication id."""

    def __init__(self, queue_url: str, client: Any) -> None:
        self.queue_url = queue_url
        self._client = client
        self._fifo = queue_url.endswith(".fifo")

    @classmethod
    def from_config(
        cls,
        target: SqsTarget,
        stores: Mapping[str, StoreConfig],
        resolve_secret: Callable[[str], str],
    ) -> SqsSender:
        from autoinfer.events.sqs import make_sqs_client  # boto3 only when a queue is configured
        from autoinfer.storage.s3 import S3Storage

        store = None
        if target.store is not None:
            config = stores.get(target.store)
            if config is None or config.type != "s3":
                raise ConfigError(
                    f"notifications.{target.name}: store {target.store!r} is not a configured s3 store"
                )
            store = S3Storage.from_config(target.store, config, resolve_secret)
        return cls(
            target.queue_url, make_sqs_client(target.queue_url, store, wait_time_s=0, retry=False)
        )

    def send(self, message: Outgoing) -> None:
        from autoinfer.storage.s3 import AWS_ERRORS, describe_error

        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MessageBody": message.body,
            "MessageAttributes": {
                "webhook-id": {"DataType": "String", "StringValue": message.webhook_id},
                "type": {"DataType": "String", "StringValue": message.event_type},
            },
        }
        if self._fifo:
            request.update(MessageGroupId="autoinfer", MessageDeduplicationId=message.webhook_id)
        try:
            self._client.send_message(**request)
        except AWS_ERRORS as error:
            raise DeliveryError(f"{self.queue_url}: {describe_error(error)}") from None

    def close(self) -> None:
        pass


#: Builds the sender of one target: `factory(target, stores, resolve_secret)`.
SenderFactory = Callable[..., Sender]
#: The sender of each target type (the `type` of its config).
SENDERS: dict[str, SenderFactory] = {
    "webhook": WebhookSender.from_config,
    "sqs": SqsSender.from_config,
}
