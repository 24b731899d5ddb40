"""Rule triggers' job templates: `{name}` placeholders rendered from an event, the defaults a
template may leave out, and the names (`key_stem`, `job_name`) rendered values must make."""

from __future__ import annotations

import copy
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from autoinfer import output_names
from autoinfer.errors import SpecError
from autoinfer.jobs.spec import JOB_NAME_PATTERN

VARIABLES = ("bucket", "key", "key_stem", "uri", "bucket_uri", "event_time")
#: Template fields given when the `job` template leaves them out.
DEFAULTS: dict[str, Any] = {"name": "{key_stem}", "data": {"input_uri": "{uri}"}}
_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")


def render_template(template: str, variables: Mapping[str, str], where: str = "template") -> str:
    """Replace `{name}` by `variables[name]`; `{{`/`}}` are literal braces; SpecError otherwise."""

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token in ("{{", "}}"):
            return token[0]
        name = match.group(1)
        if name is None:
            raise SpecError(f"{where}: unbalanced brace in {template!r} (write {{{{ or }}}})")
        if name not in variables:
            known = ", ".join("{" + v + "}" for v in VARIABLES)
            raise SpecError(
                f"{where}: unknown placeholder {{{name}}} in {template!r} (known: {known})"
            )
        return variables[name]

    return _PLACEHOLDER.sub(substitute, template)


def key_stem(key: str, prefix: str = "") -> str:
    """The key's `{key_stem}`: `incoming/images-X.zip` → `images-X`; any key that is not a
    plain zip name directly under the prefix keeps its whole name plus a hash of the key
    (`incoming/x.tar.gz` → `x.tar.gz~<8 hex>`), so that two objects never name one job
    output (`autoinfer.output_names`)."""
    return output_names.key_stem(key, prefix)


def job_name(value: str) -> str:
    """`value` if it is a valid job name, else the nearest valid one (never empty): control
    characters dropped, then, if still refused, accents folded and other symbols made `-`."""
    printable = re.sub(r"[\x00-\x1f\x7f]+", " ", value).strip()[:200].rstrip()
    folded = unicodedata.normalize("NFKD", printable).encode("ascii", "ignore").decode("ascii")
    ascii_name = re.sub(r"[^A-Za-z0-9._ -]+", "-", folded).lstrip("._ -")[:128].rstrip()
    for candidate in (value, printable, ascii_name):
        if candidate.strip() and JOB_NAME_PATTERN.match(candidate):
            return candidate
    return "job"


def with_defaults(job: dict[str, Any]) -> dict[str, Any]:
    template = copy.deepcopy(job)
    template.setdefault("name", DEFAULTS["name"])
    data = template.setdefault("data", {})
    if isinstance(data, dict):
        data.setdefault("input_uri", DEFAULTS["data"]["input_uri"])
    return template


def render_value(value: Any, variables: Mapping[str, str], where: str) -> Any:
    if isinstance(value, str):
        return render_template(value, variables, where)
    if isinstance(value, dict):
        return {k: render_value(v, variables, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, variables, f"{where}[{i}]") for i, v in enumerate(value)]
    return value
