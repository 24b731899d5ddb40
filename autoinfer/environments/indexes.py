"""The host's package indexes, as pip is configured with them, for `uv pip install`.

uv does not read pip's configuration. So that an environment installs from exactly where
`pip install` on this host would (no hard-coded hosts), pip's settings — its config files
and `PIP_*` variables, in pip's order of precedence — are translated to uv's flags. A host
that configures uv itself (`UV_INDEX_URL`, `uv.toml`, ...) is left to uv.
"""

from __future__ import annotations

import configparser
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

UV_INDEX_VARIABLES = (
    "UV_INDEX",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "UV_FIND_LINKS",
    "UV_NO_INDEX",
)
PIP_KEYS = (
    "index-url",
    "extra-index-url",
    "find-links",
    "no-index",
    "constraint",
    "trusted-host",
    "cert",
)


@dataclass(frozen=True)
class IndexSettings:
    """Flags for `uv pip install` and variables for its environment."""

    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    origin: str = "uv defaults"  # said in the build log


def uv_index_settings(env: Mapping[str, str], home: Path | None = None) -> IndexSettings:
    """pip's effective index settings on this host as uv flags (empty when uv is configured
    on its own or pip is not configured)."""
    home = home or Path(env.get("HOME") or Path.home())
    if any(env.get(name) for name in UV_INDEX_VARIABLES) or any(
        path.is_file() for path in uv_config_files(env, home)
    ):
        return IndexSettings(origin="uv's own configuration")
    settings = pip_settings(env, home)
    if not settings:
        return IndexSettings()
    args: list[str] = []
    extra_env: dict[str, str] = {}
    if settings.get("index-url"):
        args += ["--index-url", settings["index-url"].split()[0]]
    extra = settings.get("extra-index-url", "").split()
    for url in extra:
        args += ["--extra-index-url", url]
    for link in settings.get("find-links", "").split():
        args += ["--find-links", link]
    if is_true(settings.get("no-index", "")):
        args.append("--no-index")
    for constraint in settings.get("constraint", "").split():
        if Path(constraint).is_file():
            args += ["--constraint", constraint]
    for host in settings.get("trusted-host", "").split():
        args += ["--allow-insecure-host", host]
    if extra or settings.get("find-links"):
        # pip takes the best version across all its indexes; uv's default would stop at the
        # first index that has the package.
        args += ["--index-strategy", "unsafe-best-match"]
    if settings.get("cert"):
        extra_env["SSL_CERT_FILE"] = settings["cert"]
    return IndexSettings(tuple(args), extra_env, origin="pip's configuration")


def pip_settings(env: Mapping[str, str], home: Path) -> dict[str, str]:
    """pip's effective values of PIP_KEYS: config files (global, user, site, PIP_CONFIG_FILE;
    `[global]` then `[install]` in each), then `PIP_*` variables, later winning."""
    values: dict[str, str] = {}
    config_file = env.get("PIP_CONFIG_FILE")
    if config_file != os.devnull:
        for path in pip_config_files(env, home):
            values.update(_read_pip_config(path))
        if config_file:
            values.update(_read_pip_config(Path(config_file)))
    for key in PIP_KEYS:
        value = env.get("PIP_" + key.upper().replace("-", "_"))
        if value is not None:
            values[key] = value
    return {key: value for key, value in values.items() if value.strip()}


def pip_config_files(env: Mapping[str, str], home: Path) -> list[Path]:
    """pip's configuration files in its order of precedence (lowest first)."""
    xdg_dirs = env.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [Path(d) / "pip" / "pip.conf" for d in reversed(xdg_dirs.split(":")) if d]
    files.append(Path("/etc/pip.conf"))
    files.append(home / ".pip" / "pip.conf")
    files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "pip" / "pip.conf")
    files.append(Path(sys.prefix) / "pip.conf")
    return files


def uv_config_files(env: Mapping[str, str], home: Path) -> list[Path]:
    xdg_dirs = env.get("XDG_CONFIG_DIRS") or "/etc/xdg"
    files = [Path(d) / "uv" / "uv.toml" for d in xdg_dirs.split(":") if d]
    files.append(Path("/etc/uv/uv.toml"))
    files.append(Path(env.get("XDG_CONFIG_HOME") or home / ".config") / "uv" / "uv.toml")
    if env.get("UV_CONFIG_FILE"):
        files.append(Path(env["UV_CONFIG_FILE"]))
    return files


def is_true(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _read_pip_config(path: Path) -> dict[str, str]:
    parser = configparser.RawConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (OSError, configparser.Error, UnicodeDecodeError):
        return {}
    values: dict[str, str] = {}
    for section in ("global", "install"):
        if parser.has_section(section):
            for key in PIP_KEYS:
                if parser.has_option(section, key):
                    values[key] = parser.get(section, key)
    return values
