"""The job spec (trainML's job-create field names) and the job status vocabulary."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from autoinfer import output_names
from autoinfer.errors import SpecError

# Any printable name (trainML's examples use "Inference s3://bucket/key"); files made from it
# go through `safe_file_name`.
JOB_NAME_PATTERN = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


class Status(StrEnum):
    """Job statuses, in trainML's words."""

    NEW = "new"
    WAITING_RESOURCES = "waiting for resources"
    WAITING_DOWNLOAD = "waiting for data/model download"
    RUNNING = "running"
    UPLOADING = "uploading"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({Status.FINISHED, Status.FAILED, Status.STOPPED})

# The legal moves of the state machine. A job may fail or be stopped from any live status;
# `new` is re-entered when a failed/stopped job is retried or a crashed attempt is recovered.
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.NEW: frozenset({Status.WAITING_RESOURCES, Status.FAILED, Status.STOPPED}),
    Status.WAITING_RESOURCES: frozenset(
        {Status.WAITING_DOWNLOAD, Status.NEW, Status.FAILED, Status.STOPPED}
    ),
    Status.WAITING_DOWNLOAD: frozenset({Status.RUNNING, Status.NEW, Status.FAILED, Status.STOPPED}),
    Status.RUNNING: frozenset({Status.UPLOADING, Status.NEW, Status.FAILED, Status.STOPPED}),
    Status.UPLOADING: frozenset({Status.FINISHED, Status.NEW, Status.FAILED, Status.STOPPED}),
    Status.FINISHED: frozenset(),
    Status.FAILED: frozenset({Status.NEW}),
    Status.STOPPED: frozenset({Status.NEW}),
}


def can_transition(old: Status, new: Status) -> bool:
    """Whether the state machine allows `old` → `new`."""
    return new in TRANSITIONS[old]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(_Strict):
    cpu_count: int = Field(1, ge=1, le=1024)
    gpu_count: int = Field(0, ge=0, le=64)
    gpu_type: str | None = None
    # trainML's list form: any of these GPU types will do (gpu_type, when set, is one more).
    gpu_types: list[str] = Field(default_factory=list, max_length=32)
    disk_size: int = Field(10, ge=1, le=100_000, description="GiB of scratch space the job may use")
    # trainML marketplace fields: accepted and recorded; they cost nothing here.
    max_price: float | None = Field(None, ge=0)
    preemptible: bool | None = None


class ModelSource(_Strict):
    source_type: Literal["builtin", "local", "git", "aws", "http"] = "builtin"
    source_uri: str = "efficientnet_lite0"
    # ONNX classifiers brought by the user: a labels file (one "wnid name" or "name" per line).
    labels_uri: str | None = None
    # trainML's checkpoints attached to the model: named here so a request gets a precise 422.
    checkpoints: list[Any] = Field(default_factory=list)

    @field_validator("checkpoints")
    @classmethod
    def _no_checkpoints(cls, value: list[Any]) -> list[Any]:
        return _unsupported(
            value,
            "not supported: put the weights in the model folder "
            "or download them in a worker command",
        )


class OutputOptions(_Strict):
    archive: bool = True


class Data(_Strict):
    input_type: Literal["aws", "local", "http"] | None = None
    input_uri: str
    output_type: Literal["aws", "local"] | None = None
    output_uri: str
    output_options: OutputOptions = Field(default_factory=OutputOptions)
    # trainML's datasets attached to the job: named here so a request gets a precise 422.
    datasets: list[Any] = Field(default_factory=list)

    @field_validator("datasets")
    @classmethod
    def _no_datasets(cls, value: list[Any]) -> list[Any]:
        return _unsupported(
            value, "not supported: give the data as data.input_uri (a file, an archive or a prefix)"
        )

    @model_validator(mode="after")
    def _infer_types(self) -> Data:
        if self.input_type is None:
            self.input_type = uri_type(self.input_uri)
        if self.output_type is None:
            kind = uri_type(self.output_uri)
            if kind == "http":
                raise ValueError(
                    "output_uri: http(s) outputs are not supported; use s3:// or a path"
                )
            self.output_type = kind
        return self


class EnvVar(_Strict):
    key: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str


class Packages(_Strict):
    """Packages a worker command needs besides the model folder's own requirements."""

    pip: list[str] = Field(default_factory=list, max_length=500)
    # Refused (422) by the API until supported: there is no system package manager per job.
    apt: list[str] = Field(default_factory=list)
    conda: list[str] = Field(default_factory=list)

    @field_validator("apt", "conda")
    @classmethod
    def _no_system_packages(cls, value: list[str]) -> list[str]:
        return _unsupported(
            value,
            "not supported: put Python packages in packages.pip or the "
            "model's requirements.txt; system packages must be installed on the host",
        )


class Environment(_Strict):
    # trainML's environment type, e.g. "DEEPLEARNING_PY312": recorded; a PY3xx suffix picks
    # that Python for the job's environment.
    type: str | None = Field(None, max_length=100)
    env: list[EnvVar] = Field(default_factory=list)
    secrets: list[str] = Field(default_factory=list)
    packages: Packages = Field(default_factory=Packages)
    # Network inside the sandbox; None: the service's default (config `sandbox.network`).
    network: bool | None = None
    # trainML's SSH key types for logging into workers: recorded; there is no SSH into a job here.
    worker_key_types: list[str] = Field(default_factory=list, max_length=10)


class JobSpec(_Strict):
    """What a user asks for: the trainML job-create payload, validated."""

    name: str
    type: Literal["inference"] = "inference"
    resources: Resources = Field(default_factory=Resources)
    model: ModelSource = Field(default_factory=ModelSource)
    workers: list[str] = Field(default_factory=list)
    data: Data
    environment: Environment = Field(default_factory=Environment)
    timeout_s: int = Field(3600, ge=1, le=7 * 24 * 3600)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not JOB_NAME_PATTERN.match(value):
            raise ValueError("must be 1 to 200 printable characters")
        if not value.strip():
            raise ValueError("must not be blank")
        return value

    @model_validator(mode="after")
    def _workers_needed(self) -> JobSpec:
        if self.model.source_type != "builtin" and not self.workers:
            raise ValueError(
                f"workers: required when model.source_type is {self.model.source_type!r}"
            )
        return self


def _unsupported(value: list[Any], message: str) -> list[Any]:
    """A trainML field that is refused when it asks for something (an empty list asks nothing)."""
    if value:
        raise ValueError(message)
    return value


def safe_file_name(name: str) -> str:
    """A job name as one path segment, one-to-one: itself when safe (`images-X`), else made
    safe with a hash of the name (`Inference s3://b/k` → `Inference s3___b_k~<8 hex>`)."""
    return output_names.safe_file_name(name)


def uri_type(uri: str) -> Literal["aws", "local", "http"]:
    """The trainML data type of a URI: aws, http or local."""
    lowered = uri.lower()
    if lowered.startswith("s3://"):
        return "aws"
    if lowered.startswith(("http://", "https://")):
        return "http"
    return "local"


def describe_validation_error(error: ValidationError) -> str:
    """One line naming every bad field: `data.input_uri: Field required; timeout_s: ...`."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "spec"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def parse_spec(payload: Any) -> JobSpec:
    """Validate a payload into a JobSpec, raising SpecError that names each bad field."""
    try:
        return JobSpec.model_validate(payload)
    except ValidationError as error:
        raise SpecError(describe_validation_error(error)) from None
