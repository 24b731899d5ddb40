"""The pure parts of per-model environments: requirements, cache keys, Python versions, the
host's pip settings as uv flags, the installer's failure in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoinfer.environments.builder import failure_reason
from autoinfer.environments.indexes import uv_index_settings
from autoinfer.environments.requirements import collect, environment_key, python_request
from autoinfer.errors import EnvironmentRejected


def model(tmp_path: Path, **files: str) -> Path:
    for name, text in files.items():
        (tmp_path / name.replace("__", ".")).write_text(text)
    return tmp_path


def key(tmp_path: Path, text: str, pip: list[str] | None = None) -> str:
    folder = tmp_path / str(abs(hash(text)))
    folder.mkdir()
    (folder / "requirements.txt").write_text(text)
    return environment_key(
        collect(folder, pip or []), "cpython-3.11.2 /usr/bin/python3.11", "linux", "uv"
    )


def test_equivalent_requirement_lists_share_one_key(tmp_path: Path) -> None:
    plain = key(tmp_path, "tomli-w==1.0.0\nrequests>=2\n")
    assert key(tmp_path, "# deps\nRequests >= 2   # http\n\nTomli_W == 1.0.0\n") == plain
    assert key(tmp_path, "tomli-w==1.1.0\nrequests>=2\n") != plain


def test_spec_packages_join_the_model_requirements(tmp_path: Path) -> None:
    folder = model(tmp_path, requirements__txt="tomli-w==1.0.0\n")
    result = collect(folder, ["pyjokes"])
    assert result.lines == ("pyjokes", "tomli-w==1.0.0")
    assert result.sources == ("requirements.txt", "environment.packages.pip")


def test_includes_are_expanded_and_index_options_kept(tmp_path: Path) -> None:
    folder = model(
        tmp_path,
        requirements__txt="-r base.txt\n--extra-index-url https://example.org/simple\nb\n",
        base__txt="a\n",
    )
    assert collect(folder, []).lines == ("--extra-index-url https://example.org/simple", "a", "b")


@pytest.mark.parametrize(
    "line", ["-e .", ".", "./pkg", "-c constraints.txt", "file:///tmp/x.whl", "--no-deps"]
)
def test_what_cannot_be_shared_between_jobs_is_refused(tmp_path: Path, line: str) -> None:
    folder = model(tmp_path, requirements__txt=f"a\n{line}\n")
    with pytest.raises(EnvironmentRejected, match=r"^environment: requirements.txt line 2: "):
        collect(folder, [])


def test_include_outside_the_model_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("x\n")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "requirements.txt").write_text("-r ../secret.txt\n")
    with pytest.raises(EnvironmentRejected, match="not a file in the model folder"):
        collect(folder, [])


def test_pyproject_dependencies_are_read_when_there_is_no_requirements_file(tmp_path: Path) -> None:
    folder = model(
        tmp_path, pyproject__toml='[project]\nname = "m"\ndependencies = ["tomli-w==1.1.0"]\n'
    )
    assert collect(folder, []).lines == ("tomli-w==1.1.0",)
    (tmp_path / "d").mkdir()
    dynamic = model(
        tmp_path / "d", pyproject__toml='[project]\nname = "m"\ndynamic = ["dependencies"]\n'
    )
    with pytest.raises(EnvironmentRejected, match="dynamic dependencies"):
        collect(dynamic, [])


def test_a_spec_package_cannot_smuggle_options(tmp_path: Path) -> None:
    with pytest.raises(EnvironmentRejected, match=r"environment.packages.pip\[0\]"):
        collect(tmp_path, ["--index-url=https://evil.example/simple"])
    with pytest.raises(EnvironmentRejected, match=r"environment.packages.pip\[1\]"):
        collect(tmp_path, ["a", "b\nc"])


@pytest.mark.parametrize(
    ("environment_type", "version"),
    [
        ("DEEPLEARNING_PY312", "3.12"),
        ("PY311", "3.11"),
        ("py39", "3.9"),
        ("DEEPLEARNING", None),
        (None, None),
    ],
)
def test_environment_type_suffix_picks_the_python(
    environment_type: str | None, version: str | None
) -> None:
    assert python_request(environment_type) == version


def test_pip_configuration_becomes_uv_flags(tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    (xdg / "pip").mkdir(parents=True)
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("torch<=2\n")
    (xdg / "pip" / "pip.conf").write_text(
        f"[global]\nconstraint = {constraints}\nextra-index-url = file:///a/simple\n"
    )
    home = tmp_path / "home"
    (home / ".config" / "pip").mkdir(parents=True)
    (home / ".config" / "pip" / "pip.conf").write_text(
        "[global]\nfind-links = /wheels\n[install]\nindex-url = https://mirror.example/simple\n"
    )
    env = {"XDG_CONFIG_DIRS": str(xdg), "PIP_CERT": "/certs.pem", "PIP_CONFIG_FILE": ""}
    settings = uv_index_settings(env, home)
    assert settings.args == (
        "--index-url",
        "https://mirror.example/simple",
        "--extra-index-url",
        "file:///a/simple",
        "--find-links",
        "/wheels",
        "--constraint",
        str(constraints),
        "--index-strategy",
        "unsafe-best-match",
    )
    assert settings.env == {"SSL_CERT_FILE": "/certs.pem"}
    # A host that configures uv itself is left to uv.
    assert uv_index_settings({**env, "UV_INDEX_URL": "https://uv.example/simple"}, home).args == ()


def test_uv_failure_is_condensed_to_one_line() -> None:
    output = [
        "Using Python 3.11.2 environment at: /x",
        "error: No solution found when resolving dependencies",
        (
            "  cause: Because no-such-package-autoinfer-xyz was not found in the package registry and "
            "you require no-such-package-autoinfer-xyz==1, we can conclude that your requirements are unsatisfiable."
        ),
        "hint: something long",
    ]
    assert failure_reason(output) == (
        "No solution found when resolving dependencies: Because no-such-package-autoinfer-xyz was "
        "not found in the package registry and you require no-such-package-autoinfer-xyz==1, we can "
        "conclude that your requirements are unsatisfiable."
    )
    pip = [
        "Collecting x",
        "ERROR: Could not find a version that satisfies the requirement x==9 (from versions: none)",
        "ERROR: No matching distribution found for x==9",
    ]
    assert failure_reason(pip).startswith(
        "Could not find a version that satisfies the requirement x==9"
    )
