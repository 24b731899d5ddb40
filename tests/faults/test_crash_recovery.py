"""SIGKILL while work is in flight, duplicate deliveries: nothing lost, nothing done twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.crash_scenario import run_crash_scenario


@pytest.mark.slow
def test_three_kills_and_duplicate_deliveries_give_each_object_exactly_one_result(
    tmp_path: Path, model_cache: Path
) -> None:
    report = run_crash_scenario(
        tmp_path, cache_dir=model_cache, objects=200, kills=3, seed=7, progress=print, timeout_s=240
    )
    print(report.summary())

    assert report.problems == []
    assert (report.lost, report.duplicated) == (0, 0)
    assert report.results == 200
    # 200 originals; every other delivery (and a resent cut one) recorded as a duplicate.
    assert report.events_recorded - report.events_duplicate == 200
    assert report.deliveries <= report.events_recorded <= report.deliveries + report.attempts_cut
    # The kills did interrupt jobs, which the restarted service ran again as new attempts.
    assert report.jobs_recovered >= 1
