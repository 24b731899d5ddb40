"""Config-time guards on triggers: refuse configurations that cannot work before they run.

`check_loops` refuses rules whose outputs would land where a trigger listens (every job would
start another one); `check_buckets` refuses triggers on buckets that nothing configured serves;
`check_unique_names` refuses two triggers of one name.
Each raises ConfigError naming the trigger and what to change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from autoinfer.config import Config
from autoinfer.errors import ConfigError, StorageError
from autoinfer.events.kinds import source_kind
from autoinfer.events.model import event_matches
from autoinfer.storage.kinds import store_kind
from autoinfer.storage.local import LocalStore
from autoinfer.triggers import Locator, S3Locator, Trigger, render_template

__all__ = [
    "OutputLocation",
    "check_buckets",
    "check_loops",
    "check_unique_names",
    "could_receive",
    "output_locations",
]

#: Event names an upload of a job's output produces (boto3 uses multipart for large files).
OUTPUT_EVENTS = ("ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload", "ObjectCreated:Copy")


@dataclass(frozen=True)
class OutputLocation:
    """Where a rule's outputs land: every output key starts with `prefix` in `bucket`.

    `literal` means the output URI had no event-dependent part, so the outputs are exactly
    `<prefix>/<job name>.zip` (archive) or `<prefix>/<job name>/...` (no archive).
    """

    uri: str
    bucket: str
    prefix: str
    literal: bool
    archive: bool


def output_locations(trigger: Trigger, locators: Sequence[Locator]) -> list[OutputLocation]:
    """The bucket locations a rule's outputs may land in, rendered with each store's names."""
    if trigger.template is None:
        return []
    data = trigger.template.get("data") or {}
    template = data.get("output_uri")
    if not isinstance(template, str):
        return []
    archive = bool((data.get("output_options") or {}).get("archive", True))
    marker = "AUTOINFER-UNKNOWN-PART"
    locations = []
    for locator in locators:
        variables = {
            "bucket": trigger.bucket,
            "bucket_uri": locator.bucket_uri(trigger.bucket),
            "key": marker,
            "key_stem": marker,
            "uri": locator.uri_for(trigger.bucket, marker),
            "event_time": marker,
        }
        uri = render_template(template, variables, f"trigger {trigger.name!r}: job.data.output_uri")
        place = _locate(uri, locators)
        if place is None:
            continue
        bucket, key = place
        literal = marker not in key
        prefix = key.split(marker, 1)[0]
        if literal:
            prefix = prefix.rstrip("/")
            prefix = prefix + "/" if prefix else ""
        locations.append(OutputLocation(uri, bucket, prefix, literal, archive))
    return locations


def could_receive(trigger: Trigger, output: OutputLocation) -> bool:
    """Whether an object written at `output` could pass `trigger`'s filters."""
    if output.bucket != trigger.bucket:
        return False
    if not any(event_matches(p, name) for p in trigger.events for name in OUTPUT_EVENTS):
        return False
    prefix, suffix = trigger.prefix, trigger.suffix
    if not output.literal:
        return output.prefix.startswith(prefix) or prefix.startswith(output.prefix)
    if prefix.startswith(output.prefix):
        rest = prefix[len(output.prefix) :]
        # An archive lands as `<job name>.zip`, and job names hold no "/".
        if output.archive and "/" in rest:
            return False
    elif not output.prefix.startswith(prefix):
        return False
    if output.archive:
        return suffix == "" or suffix.endswith(".zip") or ".zip".endswith(suffix)
    return True


def check_loops(triggers: Sequence[Trigger], locators: Sequence[Locator] = (S3Locator(),)) -> None:
    """ConfigError if a rule's outputs would land where it or another trigger listens.

    `locators` are the naming schemes of the configured stores (local stores and S3): output
    URIs are mapped back to (bucket, key) through them. Handler triggers create jobs of
    their own choosing and cannot be checked here.
    """
    for rule in triggers:
        for output in output_locations(rule, locators):
            for listener in triggers:
                if could_receive(listener, output):
                    who = "its own input" if listener is rule else f"trigger {listener.name!r}"
                    raise ConfigError(
                        f"trigger {rule.name!r} writes its outputs to {output.uri} (bucket "
                        f"{output.bucket!r}, keys under {output.prefix!r}), which {who} watches "
                        f"(bucket {listener.bucket!r}, prefix {listener.prefix!r}, suffix "
                        f"{listener.suffix!r}): each job's output would start another job; "
                        "write the outputs outside that prefix or narrow the trigger"
                    )


def check_buckets(
    triggers: Sequence[Trigger], config: Config, local_stores: Mapping[str, LocalStore]
) -> None:
    """ConfigError for a trigger on a bucket that no configured store or source can report.

    S3 stores and webhook/SQS sources can deliver any bucket; otherwise a bucket must be a
    poll source's bucket or an existing folder in a local store's root.
    """
    if any(source_kind(s).any_bucket for s in config.sources) or any(
        store_kind(s).any_bucket for s in config.stores.values()
    ):
        return
    known = {bucket for s in config.sources for bucket in source_kind(s).buckets(s)}
    for store in local_stores.values():
        if store.root.is_dir():
            known.update(
                p.name for p in store.root.iterdir() if p.is_dir() and not p.name.startswith(".")
            )
    for trigger in triggers:
        if trigger.bucket in known:
            continue
        hints = [f"{store.root / trigger.bucket}" for store in local_stores.values()]
        create = f"; create the folder {' or '.join(hints)}" if hints else ""
        raise ConfigError(
            f"trigger {trigger.name!r}: bucket {trigger.bucket!r} is not served by any configured "
            f"store or source (known buckets: {', '.join(sorted(known)) or 'none'}){create}"
        )


def check_unique_names(triggers: Sequence[Trigger]) -> None:
    """ConfigError when two triggers share a name (it keys their jobs and counts)."""
    seen: set[str] = set()
    for trigger in triggers:
        if trigger.name in seen:
            raise ConfigError(f"trigger {trigger.name!r}: two triggers have this name")
        seen.add(trigger.name)


# --- internals ----------------------------------------------------------------------


def _locate(uri: str, locators: Sequence[Locator]) -> tuple[str, str] | None:
    """(bucket, key) of an output URI in some configured store, or None if it is outside all.
    An `s3://` URI is always placed (with or without an S3 store configured)."""
    for locator in (S3Locator(), *locators):
        try:
            place = locator.place(uri)
        except StorageError:
            raise ConfigError(
                f"output URI {uri} is the root of store '{locator.name}', where every "
                "sub-folder is a bucket: write the outputs inside a bucket"
            ) from None
        if place is not None:
            return place
    return None
