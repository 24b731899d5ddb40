"""The `environments:` section of autoinfer.yaml: how per-model Python environments are built
and kept (autoinfer.environments.EnvironmentManager)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class EnvironmentsConfig(BaseModel):
    """Per-model dependency environments, cached under `<data_dir>/environments/`.

    - `idle_days`: an environment no job has used for this long is removed (default 7 days);
      one in use is never removed.
    - `installer`: `auto` uses `uv` (the PyPI package autoinfer depends on) and falls back to
      `python -m venv` + pip only when uv is missing; `uv` / `pip` force one.
    - `build_sdists`: packages are installed from wheels only by default, because building a
      source distribution runs its setup code as the service's user, outside the sandbox;
      `true` allows it.
    """

    model_config = ConfigDict(extra="forbid")

    idle_days: float = Field(7.0, gt=0, le=3650)
    installer: Literal["auto", "uv", "pip"] = "auto"
    build_sdists: bool = False
    sweep_interval_s: float = Field(3600.0, gt=0)  # how often idle environments are looked for
