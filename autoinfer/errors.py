"""The exception hierarchy: one base class; each error names what failed and why."""

from __future__ import annotations


class AutoInferError(Exception):
    """Base class of every error autoinfer raises on purpose."""

    code = "error"
    status_code = 500


class ConfigError(AutoInferError):
    """The configuration file or an override is invalid."""

    code = "config_error"
    status_code = 400


class SpecError(AutoInferError):
    """A job spec is invalid."""

    code = "invalid_spec"
    status_code = 422


class NotFound(AutoInferError):
    """The named object (job, event, trigger...) does not exist."""

    code = "not_found"
    status_code = 404


class Conflict(AutoInferError):
    """The request conflicts with the object's current state (e.g. an illegal transition)."""

    code = "conflict"
    status_code = 409


class IllegalTransition(Conflict):
    """A job status change that the state machine does not allow."""

    code = "illegal_transition"


class StorageError(AutoInferError):
    """Reading or writing a storage URI failed: `StorageError("s3://b/k: NoSuchBucket")`.

    `transient` is True when the same call may succeed later unchanged (the store is
    unreachable, overloaded or answered 5xx), False when it cannot (no such bucket, denied).
    """

    code = "storage_error"
    status_code = 502

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class ArchiveError(StorageError):
    """An archive is corrupt, hostile (traversal, links, bombs) or too large."""

    code = "archive_error"
    status_code = 422


class EventError(AutoInferError):
    """A storage notification could not be parsed."""

    code = "invalid_event"
    status_code = 400


class ModelError(AutoInferError):
    """A model could not be found, loaded or run."""

    code = "model_error"
    status_code = 422


class AuthError(AutoInferError):
    """Missing or wrong credentials."""

    code = "unauthorized"
    status_code = 401


class JobFailed(AutoInferError):
    """A job step failed; the message is the job's one-line failure reason."""

    code = "job_failed"


class InputRejected(JobFailed):
    """The job's input can never be processed as it is (larger than the job may use): a new
    attempt would meet the same bytes, so the job fails without retrying."""

    code = "input_rejected"


class JobStopped(AutoInferError):
    """The job was stopped on request while a step ran."""

    code = "job_stopped"


class Forbidden(AutoInferError):
    """The API key is valid but its role does not allow the request."""

    code = "forbidden"
    status_code = 403


class TooManyRequests(AutoInferError):
    """A per-key or service-wide cap on concurrent requests of one kind is reached."""

    code = "too_many_requests"
    status_code = 429


class EnvironmentFailed(JobFailed):
    """A job's Python environment could not be made (an index unreachable, an installer
    crash): another attempt may succeed. The message starts with `environment: `."""

    code = "environment_failed"


class EnvironmentRejected(InputRejected):
    """A job's requirements can never be installed as they are (no solution, an unknown
    package, a Python version this host lacks): the job fails without retrying."""

    code = "environment_rejected"
