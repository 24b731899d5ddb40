"""The job spec's validation and the status state machine."""

import itertools

import pytest

from autoinfer.errors import SpecError
from autoinfer.jobs.spec import Status, can_transition, parse_spec, safe_file_name

VALID = {
    "name": "images-1",
    "data": {"input_uri": "s3://data/incoming/x.zip", "output_uri": "s3://data/processed"},
}


def test_minimal_spec_gets_design_defaults() -> None:
    spec = parse_spec(VALID)
    assert spec.type == "inference"
    assert spec.model.source_type == "builtin" and spec.model.source_uri == "efficientnet_lite0"
    assert spec.data.input_type == "aws" and spec.data.output_type == "aws"
    assert spec.data.output_options.archive is True
    assert spec.resources.disk_size == 10 and spec.timeout_s == 3600


def test_design_example_spec_is_accepted() -> None:
    spec = parse_spec(
        {
            "name": "images-2026-11-24_10-00-00",
            "type": "inference",
            "resources": {"cpu_count": 1, "gpu_count": 0, "gpu_type": None, "disk_size": 10},
            "model": {"source_type": "builtin", "source_uri": "efficientnet_lite0"},
            "workers": ["python predict.py"],
            "data": {
                "input_type": "aws",
                "input_uri": "s3://data/incoming/images-X.zip",
                "output_type": "aws",
                "output_uri": "s3://data/processed",
                "output_options": {"archive": True},
            },
            "environment": {"env": [{"key": "K", "value": "V"}], "secrets": []},
            "timeout_s": 3600,
        }
    )
    assert spec.environment.env[0].key == "K"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"data": {"input_uri": "x"}}, "data.output_uri"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"resources": {"cpu_count": 0}}, "resources.cpu_count"),
        ({"model": {"source_type": "ftp", "source_uri": "x"}}, "model.source_type"),
        ({"name": ""}, "name"),
        ({"surprise": 1}, "surprise"),
        ({"model": {"source_type": "git", "source_uri": "https://x/y.git"}}, "workers"),
    ],
)
def test_invalid_spec_error_names_the_field(change: dict, field: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec({**VALID, **change})
    assert field in str(raised.value)


def test_trainml_style_job_names_are_accepted_and_made_file_safe() -> None:
    spec = parse_spec({**VALID, "name": "Inference s3://data/incoming/x.zip"})
    assert "/" not in safe_file_name(spec.name)
    assert safe_file_name("../../etc") not in ("..", ".", "")
    assert "/" not in safe_file_name("../../etc")


def test_state_machine_allows_the_happy_path_only_forward() -> None:
    path = [
        Status.NEW,
        Status.WAITING_RESOURCES,
        Status.WAITING_DOWNLOAD,
        Status.RUNNING,
        Status.UPLOADING,
        Status.FINISHED,
    ]
    for old, new in itertools.pairwise(path):
        assert can_transition(old, new)
    assert not can_transition(Status.RUNNING, Status.WAITING_DOWNLOAD)
    assert not can_transition(Status.NEW, Status.RUNNING)
    assert not can_transition(Status.FINISHED, Status.NEW)
    for live in path[:-1]:
        assert can_transition(live, Status.FAILED) and can_transition(live, Status.STOPPED)
