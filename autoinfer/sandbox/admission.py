"""What a job must pass before a secure service accepts it: confined local paths, and a role
allowed to run worker commands.

- Every local path a job names (`data.input_uri`, `data.output_uri`, a local or `file://`
  `model.source_uri` — a local git repository included — and a local `model.labels_uri`)
  must resolve, symlinks and `..` followed, inside a configured local store's root or an
  `allowed_paths` entry, and never inside the service's `data_dir` (its database, master
  key, API key, scratch folders and caches). The API checks it when the job is created, the
  runner again before it reads or writes (a symlink may have changed in between).
- Worker commands need the role `worker_commands_role` (default `submit`); a deployment that
  sets `code` or `admin` lets `submit` keys run built-in models only.

An `--insecure` service checks neither: local use keeps its freedom.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from autoinfer.errors import Forbidden, SpecError
from autoinfer.jobs.spec import JobSpec
from autoinfer.keys import Principal, Role
from autoinfer.storage.local import path_from_uri
from autoinfer.storage.registry import uri_scheme

if TYPE_CHECKING:
    from autoinfer.config import Config
    from autoinfer.storage.registry import StorageRegistry

RULE = "must lie inside a local store root or allowed_paths; data_dir is never allowed"


class PathNotAllowed(SpecError):
    """A job names a local path outside what the service lets jobs read and write."""

    code = "path_not_allowed"


@dataclass(frozen=True)
class PathPolicy:
    """Where a job's local paths may lie: in `roots`, never in `forbidden` (both resolved)."""

    roots: tuple[Path, ...]
    forbidden: tuple[Path, ...]
    base_dir: Path  # relative paths in a spec are taken from here, as storage does

    @classmethod
    def build(cls, roots: Iterable[Path], forbidden: Iterable[Path], base_dir: Path) -> PathPolicy:
        return cls(
            roots=tuple(_real(p) for p in roots),
            forbidden=tuple(_real(p) for p in forbidden),
            base_dir=base_dir,
        )

    def allows(self, path: Path) -> bool:
        real = _real(path)
        if any(_inside(real, f) for f in self.forbidden):
            return False
        return any(_inside(real, root) for root in self.roots)

    def check_uri(self, field: str, uri: str) -> None:
        """PathNotAllowed naming `field` unless the local path `uri` is allowed."""
        path = path_from_uri(uri, self.base_dir)
        if not self.allows(path):
            raise PathNotAllowed(f"{field}: {uri} {RULE}")

    def check_spec(self, spec: JobSpec) -> None:
        """PathNotAllowed naming every field of `spec` whose local path is not allowed."""
        problems = []
        for field, uri in local_paths(spec):
            try:
                self.check_uri(field, uri)
            except PathNotAllowed as error:
                problems.append(str(error))
        if problems:
            raise PathNotAllowed("; ".join(problems))


def local_paths(spec: JobSpec) -> Iterator[tuple[str, str]]:
    """(field, uri) of each local path the job would read or write."""
    data = spec.data
    for field, uri in (("data.input_uri", data.input_uri), ("data.output_uri", data.output_uri)):
        if _is_local(uri):
            yield field, uri
    model = spec.model
    if model.source_type == "git":
        if _is_local_git(model.source_uri):
            yield "model.source_uri", model.source_uri
    elif model.source_type != "builtin" and _is_local(model.source_uri):
        yield "model.source_uri", model.source_uri
    if model.labels_uri and _is_local(model.labels_uri):
        yield "model.labels_uri", model.labels_uri


@dataclass(frozen=True)
class JobAdmission:
    """The checks of a secure service; `paths` None means local paths are not confined."""

    paths: PathPolicy | None
    worker_commands_role: Role = Role.SUBMIT

    def check(self, spec: JobSpec, principal: Principal | None) -> None:
        """Forbidden if `principal` may not run the job's worker commands; PathNotAllowed if
        a local path is outside what jobs may use. A None principal (a trigger's own rule, an
        insecure service) is not checked for its role."""
        if principal is not None and spec.workers:
            needed = self.worker_commands_role
            if not principal.role.allows(needed):
                raise Forbidden(
                    f"this key's role '{principal.role.value}' cannot run worker commands "
                    f"(needs {needed.value}: worker_commands_role); built-in models need no "
                    "workers"
                )
        if self.paths is not None:
            self.paths.check_spec(spec)


def _is_local(uri: str) -> bool:
    return uri_scheme(uri) in ("", "file")


def _is_local_git(url: str) -> bool:
    """Whether git would read `url` from this machine: a path or file://, not `host:path`
    (scp-like ssh) or another scheme."""
    scheme = uri_scheme(url)
    if scheme:
        return scheme == "file"
    head = url.split("/", 1)[0]
    return ":" not in head


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _inside(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)


def admission_for(config: Config, storage: StorageRegistry, *, insecure: bool) -> JobAdmission:
    """The admission of a service: nothing confined when `insecure`; else its local stores'
    roots and `allowed_paths`, never its data and cache folders."""
    role = Role(config.worker_commands_role)
    if insecure:
        return JobAdmission(paths=None, worker_commands_role=role)
    roots = [store.root for store in storage.local_stores.values()]
    roots += [config.resolve_path(path) for path in config.allowed_paths]
    policy = PathPolicy.build(roots, [config.data_path, config.cache_path], storage.base_dir)
    return JobAdmission(paths=policy, worker_commands_role=role)
