"""trainML's job fields through the SDK: understood and recorded, or refused with a 422 that
names the field; never dropped. The API runs on a real port; no executor, so jobs stay `new`."""

# ruff: noqa: C408 - the jobs are written as trainML users write them, with dict(...)

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from autoinfer.config import Config
from autoinfer.errors import SpecError
from autoinfer.sdk import SyncAutoInfer
from autoinfer.service import AutoInferService
from tests.conftest import serving_api_and_events

API_KEY = "trainml-fields-key"


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AutoInferService]:
    monkeypatch.delenv("AUTOINFER_API_KEY", raising=False)
    (tmp_path / "buckets" / "data").mkdir(parents=True)
    config = Config.model_validate(
        {
            "data_dir": str(tmp_path / "state"),
            "api_key": API_KEY,
            "stores": {"local": {"type": "local", "root": str(tmp_path / "buckets")}},
        }
    )
    with serving_api_and_events(AutoInferService(config)) as running:
        yield running


def trainml_create(client: Any, root: Path, **changes: Any) -> Any:
    """A job created as a trainML user writes it (argument names and shapes of trainML's SDK)."""
    arguments: dict[str, Any] = dict(
        name="trainml-shaped",
        type="inference",
        gpu_types=["rtx3090"],
        gpu_count=1,
        disk_size=10,
        max_price=0.5,
        preemptible=True,
        environment=dict(
            type="DEEPLEARNING_PY311",
            packages=dict(pip=["tomli-w==1.0.0"]),
            env=[dict(key="MODE", value="fast")],
        ),
        workers=["python predict.py"],
        data=dict(
            datasets=[],
            input_type="local",
            input_uri=str(root / "data" / "incoming" / "images.zip"),
            output_type="local",
            output_uri=str(root / "data" / "processed"),
        ),
        model=dict(source_type="builtin", source_uri="efficientnet_lite0", checkpoints=[]),
    )
    arguments.update(changes)
    return client.jobs.create(**arguments)


def test_trainml_shaped_create_is_accepted_and_its_fields_are_in_the_record(
    service: AutoInferService, tmp_path: Path
) -> None:
    assert service.url is not None
    client = SyncAutoInfer(service.url, API_KEY)
    job = trainml_create(client, tmp_path / "buckets")
    record = httpx.get(
        f"{service.url}/v1/jobs/{job.id}", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    resources = record["spec"]["resources"]
    assert resources["gpu_types"] == ["rtx3090"]
    assert resources["gpu_count"] == 1
    assert resources["max_price"] == 0.5
    assert resources["preemptible"] is True
    environment = record["spec"]["environment"]
    assert environment["type"] == "DEEPLEARNING_PY311"
    assert environment["packages"]["pip"] == ["tomli-w==1.0.0"]
    assert environment["env"] == [{"key": "MODE", "value": "fast"}]

    shown = subprocess.run(
        [sys.executable, "-m", "autoinfer.cli", "jobs", "get", job.id],
        capture_output=True,
        text=True,
        check=False,
        env={"AUTOINFER_URL": service.url, "AUTOINFER_KEY": API_KEY, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "1 gpu (rtx3090)" in shown.stdout
    assert "max_price 0.5" in shown.stdout and "preemptible true" in shown.stdout
    assert "environment: DEEPLEARNING_PY311, pip: tomli-w==1.0.0" in shown.stdout
    as_json = subprocess.run(
        [sys.executable, "-m", "autoinfer.cli", "jobs", "get", job.id, "--json"],
        capture_output=True,
        text=True,
        check=False,
        env={"AUTOINFER_URL": service.url, "AUTOINFER_KEY": API_KEY, "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert json.loads(as_json.stdout)["spec"]["resources"]["max_price"] == 0.5


@pytest.mark.parametrize(
    ("changes", "field", "advice"),
    [
        (
            {"environment": {"type": "DEEPLEARNING_PY311", "packages": {"apt": ["libgl1"]}}},
            "environment.packages.apt",
            "put Python packages in packages.pip or the model's requirements.txt",
        ),
        (
            {"environment": {"packages": {"conda": ["cudatoolkit"]}}},
            "environment.packages.conda",
            "system packages must be installed on the host",
        ),
        (
            {"data": {"datasets": [{"id": "d1"}], "input_uri": "/x", "output_uri": "/y"}},
            "data.datasets",
            "give the data as data.input_uri",
        ),
        (
            {"model": {"checkpoints": ["c1"]}},
            "model.checkpoints",
            "put the weights in the model folder",
        ),
    ],
)
def test_unsupported_trainml_fields_get_a_422_naming_the_field(
    service: AutoInferService, tmp_path: Path, changes: dict, field: str, advice: str
) -> None:
    assert service.url is not None
    client = SyncAutoInfer(service.url, API_KEY)
    with pytest.raises(SpecError) as refused:
        trainml_create(client, tmp_path / "buckets", **changes)
    message = str(refused.value)
    assert message.startswith(f"{field}: not supported"), message
    assert advice in message
    assert service.jobs.list()[1] == 0


def test_unknown_sdk_arguments_reach_the_api_and_are_refused_by_name(
    service: AutoInferService, tmp_path: Path
) -> None:
    assert service.url is not None
    client = SyncAutoInfer(service.url, API_KEY)
    with pytest.raises(SpecError, match=r"^vpn: Extra inputs are not permitted"):
        trainml_create(client, tmp_path / "buckets", vpn={"net": {}})
    response = httpx.post(
        f"{service.url}/v1/jobs",
        json={
            "name": "x",
            "environment": {"packages": {"apt": ["curl"]}},
            "data": {"input_uri": "/x", "output_uri": "/y"},
        },
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("environment.packages.apt: not supported")
