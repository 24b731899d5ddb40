"""The watch source does not report a result this service wrote into its store when no trigger
wants it (its event could only be `ignored`); anything else it reports as before, results a
trigger matches (a chained pipeline) included."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from autoinfer.storage.local import LocalStore
from tests.integration.test_sources_watch import Service
from tests.support.waiting import wait_until


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    world = Service(tmp_path)
    yield world
    world.stop()


def _keys(service: Service) -> dict[str, str]:
    assert service.pipeline is not None
    events, _ = service.pipeline.inbox.list(limit=1000)
    return {event.key or "": event.outcome for event in events}


def test_own_results_no_trigger_wants_are_not_reported(service: Service, tmp_path: Path) -> None:
    pipeline = service.start()
    store = service.storage.local_stores["local"]
    assert isinstance(store, LocalStore)
    output = tmp_path / "output"
    output.mkdir()
    (output / "a_pred.json").write_text("{}")

    store.write_zip(output, store.uri_for("data", "processed/result.zip"))
    store.write_zip(output, store.uri_for("data", "incoming/chained.zip"))  # a trigger's input
    other = tmp_path / "buckets" / "data" / "processed" / "by-someone-else.zip"
    other.write_bytes(b"not ours")
    wait_until(lambda: len(_keys(service)) >= 2, "the two reported objects")
    wait_until(lambda: service.watcher.settling == 0, "nothing left settling")
    assert _keys(service) == {
        "incoming/chained.zip": "matched",
        "processed/by-someone-else.zip": "ignored",
    }
    assert service.job_count() == 1
    assert pipeline.inbox.list()[1] == 2


def test_a_rewritten_own_result_changed_by_someone_else_is_reported(
    service: Service, tmp_path: Path
) -> None:
    service.start()
    store = service.storage.local_stores["local"]
    assert isinstance(store, LocalStore)
    output = tmp_path / "output"
    output.mkdir()
    (output / "a_pred.json").write_text("{}")
    store.write_zip(output, store.uri_for("data", "processed/result.zip"))
    wait_until(lambda: service.watcher.settling == 0, "the result settled")
    (tmp_path / "buckets" / "data" / "processed" / "result.zip").write_bytes(b"replaced")
    wait_until(lambda: "processed/result.zip" in _keys(service), "the replaced file's event")
    assert _keys(service) == {"processed/result.zip": "ignored"}
