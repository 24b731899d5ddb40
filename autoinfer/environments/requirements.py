"""What a job's environment must contain, and the key it is cached by (pure logic, no I/O
beyond reading the model folder's requirement files).

The requirements come from the model folder's `requirements.txt` (its `-r` includes
expanded), else its `pyproject.toml`'s `[project] dependencies`, plus the spec's
`environment.packages.pip`. They are normalized (comments, blank lines and spacing dropped,
names canonicalized, sorted) so that equivalent lists share one cached environment.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from autoinfer.errors import EnvironmentRejected

try:  # `packaging` comes with pip's ecosystem; without it lines are only trimmed
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # pragma: no cover - packaging is installed alongside autoinfer
    Requirement = None  # type: ignore[assignment,misc]
    InvalidRequirement = ValueError  # type: ignore[assignment,misc]

KEY_FORMAT = 1  # bump when what goes into an environment changes for the same inputs
MAX_INCLUDE_DEPTH = 5
PYTHON_SUFFIX = re.compile(r"PY(3)(\d{1,2})$", re.IGNORECASE)
# Options a requirements file may carry that only say where packages come from.
INDEX_OPTIONS = (
    "--index-url",
    "-i",
    "--extra-index-url",
    "--find-links",
    "-f",
    "--no-index",
    "--pre",
    "--prefer-binary",
    "--only-binary",
    "--no-binary",
    "--trusted-host",
)
LOCAL_PREFIXES = (".", "/", "~", "file:")


@dataclass(frozen=True)
class RequirementSet:
    """The normalized requirement lines of one job's environment, and where they came from."""

    lines: tuple[str, ...]
    sources: tuple[str, ...]  # e.g. ("requirements.txt", "environment.packages.pip")

    def text(self) -> str:
        """The lines as a requirements file (what the installer is given)."""
        return "".join(line + "\n" for line in self.lines)

    def describe(self) -> str:
        count = sum(1 for line in self.lines if not line.startswith("-"))
        where = " + ".join(self.sources) if self.sources else "no requirements"
        return f"{count} requirement(s) from {where}"


def python_request(environment_type: str | None) -> str | None:
    """The Python version a trainML environment type asks for: `DEEPLEARNING_PY312` → `3.12`,
    `PY311` → `3.11`; None when the type names no version (the service's Python is used)."""
    if not environment_type:
        return None
    match = PYTHON_SUFFIX.search(environment_type.strip())
    return f"{match.group(1)}.{match.group(2)}" if match else None


def collect(model_dir: Path, pip_packages: list[str]) -> RequirementSet:
    """The normalized requirements of a model folder plus the spec's `packages.pip`.

    EnvironmentRejected (`environment: requirements.txt line 3: ...`) for what cannot be
    cached and shared: local paths, editable installs, constraint files, dynamic pyproject
    dependencies."""
    lines: list[str] = []
    sources: list[str] = []
    requirements = model_dir / "requirements.txt"
    pyproject = model_dir / "pyproject.toml"
    if requirements.is_file():
        lines += _read_requirements(model_dir, requirements, depth=0)
        sources.append("requirements.txt")
    elif pyproject.is_file():
        lines += _pyproject_dependencies(pyproject)
        sources.append("pyproject.toml")
    if pip_packages:
        for index, package in enumerate(pip_packages):
            where = f"environment.packages.pip[{index}]"
            if "\n" in package or "\r" in package or not package.strip():
                raise EnvironmentRejected(f"environment: {where}: must be one requirement")
            if package.strip().startswith("-"):
                raise EnvironmentRejected(
                    f"environment: {where}: options are not allowed here; put them in the "
                    "model's requirements.txt"
                )
            lines.append(_normalize(package.strip(), where))
        sources.append("environment.packages.pip")
    options = list(dict.fromkeys(line for line in lines if line.startswith("-")))
    packages = sorted({line for line in lines if not line.startswith("-")})
    return RequirementSet(tuple(options + packages), tuple(sources))


def environment_key(
    requirements: RequirementSet, interpreter: str, platform: str, installer: str
) -> str:
    """The cache key: a SHA-256 over the normalized requirements, the base interpreter
    (implementation, full version and path), the platform and how it is installed."""
    payload = json.dumps(
        {
            "format": KEY_FORMAT,
            "requirements": list(requirements.lines),
            "python": interpreter,
            "platform": platform,
            "installer": installer,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _read_requirements(model_dir: Path, file: Path, *, depth: int) -> list[str]:
    if depth > MAX_INCLUDE_DEPTH:
        raise EnvironmentRejected(f"environment: {file.name}: -r includes nest too deeply")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise EnvironmentRejected(f"environment: {file.name}: cannot be read: {error}") from None
    lines: list[str] = []
    for number, line in _logical_lines(text):
        where = f"{file.relative_to(model_dir)} line {number}"
        option, _, value = line.partition(" ")
        option, value = option.strip(), value.strip()
        if "=" in option and option.startswith("--"):
            option, _, value = option.partition("=")
        if option in ("-r", "--requirement"):
            include = (file.parent / value).resolve()
            if not include.is_relative_to(model_dir.resolve()) or not include.is_file():
                raise EnvironmentRejected(
                    f"environment: {where}: {value} is not a file in the model folder"
                )
            lines += _read_requirements(model_dir, include, depth=depth + 1)
        elif option in ("-c", "--constraint", "-e", "--editable") or line.startswith(
            LOCAL_PREFIXES
        ):
            raise EnvironmentRejected(
                f"environment: {where}: {line!r} is not supported: environments are shared "
                "between jobs, so they hold only packages from an index (pin versions instead "
                "of constraint files; ship local code in the model folder)"
            )
        elif option.startswith("-"):
            if option not in INDEX_OPTIONS:
                raise EnvironmentRejected(
                    f"environment: {where}: option {option} is not supported in requirements"
                )
            lines.append(f"{option} {value}".strip())
        else:
            lines.append(_normalize(line, where))
    return lines


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, line) with comments dropped and `\\` continuations joined."""
    result: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            result.append((start, " ".join(line.split())))
    if pending.strip():
        result.append((start, " ".join(pending.split())))
    return result


def _normalize(line: str, where: str) -> str:
    if Requirement is None:
        return line
    try:
        requirement = Requirement(line)
    except InvalidRequirement as error:
        raise EnvironmentRejected(f"environment: {where}: {line!r}: {error}") from None
    if requirement.url and requirement.url.startswith("file:"):
        raise EnvironmentRejected(
            f"environment: {where}: local file requirements are not supported"
        )
    requirement.name = re.sub(r"[-_.]+", "-", requirement.name).lower()
    return str(requirement)


def _pyproject_dependencies(pyproject: Path) -> list[str]:
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise EnvironmentRejected(f"environment: pyproject.toml: {error}") from None
    project = data.get("project") or {}
    if "dependencies" in (project.get("dynamic") or []):
        raise EnvironmentRejected(
            "environment: pyproject.toml: dynamic dependencies are not supported; list them "
            "in [project] dependencies or in requirements.txt"
        )
    dependencies = project.get("dependencies") or []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise EnvironmentRejected(
            "environment: pyproject.toml: [project] dependencies must be a list of strings"
        )
    return [
        _normalize(dependency, f"pyproject.toml dependencies[{index}]")
        for index, dependency in enumerate(dependencies)
    ]
