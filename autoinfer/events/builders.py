"""Building the configured event sources: `sources[].type` → the builder of that source.

The one place that names the concrete sources (how the rest of the service tells source types
apart is `autoinfer.events.kinds`). Each builder checks its own settings and raises
ConfigError naming the source (`sources[2] (poll): ...`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autoinfer.errors import ConfigError

if TYPE_CHECKING:
    from autoinfer.config import Config, SourceConfig
    from autoinfer.db import Database
    from autoinfer.events.model import S3Event
    from autoinfer.events.source import Ingest, Source
    from autoinfer.events.sqs import Reject
    from autoinfer.events.webhook import WebhookSource
    from autoinfer.storage.local import LocalStore
    from autoinfer.storage.registry import StorageRegistry


@dataclass(frozen=True)
class SourceContext:
    """What a source is built from: the service's configuration and the pipeline's parts."""

    config: Config
    db: Database
    storage: StorageRegistry
    ingest: Ingest
    reject: Reject
    resolve_secret: Callable[[str], str]
    #: Overrides every watch source's configured `settle_s` when given.
    settle_s: float | None = None
    #: Where the webhook sources built are listed: the HTTP API feeds them.
    webhooks: list[WebhookSource] = field(default_factory=list)
    #: Whether some trigger matches an event (a watch source skips its own results otherwise).
    wanted: Callable[[S3Event], bool] | None = None


@dataclass(frozen=True)
class _Request:
    """One source to build: its configuration, its name, where it is in the file, its store."""

    config: SourceConfig
    name: str
    where: str
    store: str | None


#: Builds one source; returns it with the store whose names its events carry.
SourceBuilder = Callable[[SourceContext, _Request], "tuple[Source, str | None]"]


def build_source(
    ctx: SourceContext, index: int, config: SourceConfig, name: str
) -> tuple[Source, str | None]:
    """The source `config` describes (the `index`th in the file), named `name`, with the
    store whose names its events carry (None: s3:// names); ConfigError for bad settings."""
    where = f"sources[{index}] ({config.type})"
    store = config.store
    if store is not None and store not in ctx.config.stores:
        known = ", ".join(sorted(ctx.config.stores)) or "none"
        raise ConfigError(f"{where}: store {store!r} is not configured (configured: {known})")
    return BUILDERS[config.type](ctx, _Request(config, name, where, store))


def _watch(ctx: SourceContext, request: _Request) -> tuple[Source, str | None]:
    from autoinfer.events.watch import WatchSource
    from autoinfer.inbox import SourceCursor

    config = request.config
    local = _local_store_for(ctx, config, request.where)
    source = WatchSource(
        request.name,
        local,
        ctx.ingest,
        SourceCursor(ctx.db, request.name),
        rescan_s=config.rescan_s,
        settle_s=config.settle_s if ctx.settle_s is None else ctx.settle_s,
        wanted=ctx.wanted,
    )
    return source, local.name


def _webhook(ctx: SourceContext, request: _Request) -> tuple[Source, str | None]:
    from autoinfer.events.webhook import WebhookSource

    source = WebhookSource(request.name, request.config.token, request.store)
    ctx.webhooks.append(source)
    return source, request.store


def _poll(ctx: SourceContext, request: _Request) -> tuple[Source, str | None]:
    from autoinfer.events.poll import PollSource
    from autoinfer.inbox import SourceCursor
    from autoinfer.triggers import Locator, S3Locator

    config, store = request.config, request.store
    if not config.bucket:
        raise ConfigError(f"{request.where}: a poll source needs a `bucket`")
    if store is None and len(ctx.config.stores) == 1:
        store = next(iter(ctx.config.stores))
    if store is None:
        raise ConfigError(f"{request.where}: name the `store` to poll")
    locator: Locator = ctx.storage.local_stores.get(store) or S3Locator()
    source = PollSource(
        request.name,
        ctx.storage,
        locator,
        config.bucket,
        config.prefix,
        ctx.ingest,
        SourceCursor(ctx.db, request.name),
        interval_s=config.interval_s,
        backfill=config.backfill,
    )
    return source, store


def _sqs(ctx: SourceContext, request: _Request) -> tuple[Source, str | None]:
    from autoinfer.events.sqs import SqsSource  # boto3 only when a queue is configured

    source = SqsSource.from_config(
        request.name,
        request.config,
        ctx.config.stores,
        ctx.resolve_secret,
        ctx.ingest,
        reject=ctx.reject,
    )
    return source, request.store


def _local_store_for(ctx: SourceContext, config: SourceConfig, where: str) -> LocalStore:
    local = ctx.storage.local_stores
    if config.store is not None:
        try:
            return ctx.storage.local_store(config.store)
        except ConfigError as error:
            raise ConfigError(f"{where}: {error}") from None
    if len(local) == 1:
        return next(iter(local.values()))
    raise ConfigError(
        f"{where}: name the local `store` to watch (local stores: {', '.join(local) or 'none'})"
    )


BUILDERS: dict[str, SourceBuilder] = {
    "watch": _watch,
    "webhook": _webhook,
    "poll": _poll,
    "sqs": _sqs,
}
