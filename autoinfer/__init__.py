"""autoinfer: new data in a bucket becomes predictions next to it."""

__version__ = "0.1.0"

from autoinfer.errors import AutoInferError
from autoinfer.jobs.spec import JobSpec, Status
from autoinfer.sdk import APIError, AutoInfer, Job, SyncAutoInfer

__all__ = ["APIError", "AutoInfer", "AutoInferError", "Job", "JobSpec", "Status", "SyncAutoInfer"]
