"""autoinfer: new data in a bucket becomes predictions next to it."""

__version__ = "0.1.0"

from autoinfer.errors import AutoInferError  # noqa: E402
from autoinfer.jobs.spec import JobSpec, Status  # noqa: E402
from autoinfer.sdk import APIError, AutoInfer, Job, SyncAutoInfer  # noqa: E402

__all__ = ["APIError", "AutoInfer", "AutoInferError", "Job", "JobSpec", "Status", "SyncAutoInfer"]
