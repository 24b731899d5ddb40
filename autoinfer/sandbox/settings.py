"""The `sandbox:` section of autoinfer.yaml: how worker commands are isolated.

`sandbox: bwrap` (the default) and `sandbox: none` are shorthands for `{type: bwrap}` and
`{type: none}`; the mapping form adds the knobs below.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NOBODY = 65534


class SandboxConfig(BaseModel):
    """How each worker command runs (autoinfer.sandbox).

    - `type`: `bwrap` runs it in a bubblewrap sandbox (only its own folders, read-only system,
      no network, an unprivileged uid when the service runs as root); `none` runs it as the
      service's user with the service's view of the machine (warned about at start).
    - `network`: whether a job's sandbox has the host's network when its spec does not say
      (`environment.network`); default off.
    - `memory_mb`: the data-segment limit (RLIMIT_DATA) of each process of a job; None: none.
      (Not RLIMIT_AS: GPU runtimes reserve far more address space than they use.)
    - `open_files`: RLIMIT_NOFILE of each process.
    - `processes`: RLIMIT_NPROC, set only when the service runs as root and jobs run as `uid`:
      the count is per uid, so it caps the processes of all sandboxed jobs together.
    - `uid` / `gid`: who jobs run as when the service runs as root (default `nobody`).
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["bwrap", "none"] = "bwrap"
    network: bool = False
    memory_mb: int | None = Field(None, ge=16, le=16 * 1024 * 1024)
    open_files: int = Field(4096, ge=16, le=1_048_576)
    processes: int = Field(4096, ge=8, le=4_194_304)
    uid: int = Field(NOBODY, ge=1, le=2**31 - 1)
    gid: int = Field(NOBODY, ge=1, le=2**31 - 1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """`sandbox: none` means `sandbox: {type: none}`."""
        return {"type": value} if isinstance(value, str) else value
