"""Bucket notification settings, read as S3's GetBucketNotificationConfiguration returns
them: does a destination get every event a trigger wants, and what setting would. Pure: the
doctor (`autoinfer.storage.s3.checks`) reads the settings and reports.
"""

from __future__ import annotations

import json
from typing import Any


def destinations(settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Every destination of a GetBucketNotificationConfiguration answer, with its ARN."""
    found: list[dict[str, Any]] = []
    for section, arn_key in (
        ("QueueConfigurations", "QueueArn"),
        ("TopicConfigurations", "TopicArn"),
        ("LambdaFunctionConfigurations", "LambdaFunctionArn"),
    ):
        found.extend(
            {**item, "Arn": item.get(arn_key, ""), "Kind": section}
            for item in settings.get(section, []) or []
        )
    return found


def filter_rules(destination: dict[str, Any]) -> dict[str, str]:
    rules = destination.get("Filter", {}).get("Key", {}).get("FilterRules", []) or []
    return {str(rule.get("Name", "")).lower(): str(rule.get("Value", "")) for rule in rules}


def covers(destination: dict[str, Any], trigger: Any) -> bool:
    """Whether the destination is sent every event the trigger wants: an overlapping event
    name, a filter prefix that is a prefix of the trigger's and a suffix that ends it."""
    rules = filter_rules(destination)
    if not trigger.prefix.startswith(rules.get("prefix", "")):
        return False
    if not trigger.suffix.endswith(rules.get("suffix", "")):
        return False
    sent = [name.removeprefix("s3:") for name in destination.get("Events", [])]
    wanted = [name.removeprefix("s3:") for name in trigger.events]
    return any(overlap(a, b) for a in sent for b in wanted)


def overlap(a: str, b: str) -> bool:
    if a == b or a == "*" or b == "*":
        return True
    if a.endswith("*") and b.startswith(a[:-1]):
        return True
    return b.endswith("*") and a.startswith(b[:-1])


def sent_to(destination: dict[str, Any], queues: dict[str, str]) -> bool:
    """Whether the destination is one of the queues (by ARN, else by queue name)."""
    arn = destination["Arn"]
    return any(
        (known_arn and arn == known_arn) or arn.rsplit(":", 1)[-1] == queue_name(url)
        for url, known_arn in queues.items()
    )


def queue_name(queue_url: str) -> str:
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def example_configuration(queues: dict[str, str], trigger: Any) -> str:
    """The bucket notification setting (JSON) that sends the trigger's events to the queue."""
    url, arn = next(iter(queues.items()), ("", ""))
    rules = [{"Name": "prefix", "Value": trigger.prefix}] if trigger.prefix else []
    rules += [{"Name": "suffix", "Value": trigger.suffix}] if trigger.suffix else []
    entry: dict[str, Any] = {
        "QueueArn": arn or f"<ARN of {queue_name(url) or 'your queue'}>",
        "Events": ["s3:ObjectCreated:*"],
    }
    if rules:
        entry["Filter"] = {"Key": {"FilterRules": rules}}
    return json.dumps({"QueueConfigurations": [entry]}, separators=(",", ":"))
