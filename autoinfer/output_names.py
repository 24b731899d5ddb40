"""How objects and jobs become output names, so that two different objects never share one.

Two mappings lead from an object to its result: the trigger's `{key_stem}` (object key → job
name) and `safe_file_name` (job name → the output's file name, `<name>.zip` or `<name>/`).
Each is one-to-one:

- `key_stem(key, prefix)` is the key below the prefix without `.zip` when the key is a plain
  zip file name directly under the prefix (`incoming/images-X.zip` → `images-X`). Every
  other key (another extension, none, a sub-folder below the prefix, characters a file name
  cannot keep, a `~`, very long) is written out whole, made file-safe, and followed by `~`
  and 8 hex digits of the SHA-256 of the whole key: `incoming/x.tar.gz` →
  `x.tar.gz~<hash>`, `incoming/a/b.zip` → `a_b.zip~<hash>`. Plain stems never hold `~`, so
  the two forms cannot meet, and the same key always gives the same stem: a new version of
  an object replaces its result, never adds one.
- `safe_file_name(name)` is the name itself when it is already a safe file name, else the
  file-safe form followed by `~` and a hash of the name (`a/b` → `a_b~<hash>`), so two job
  names never write one file (short of a name made to copy another's hash).
"""

from __future__ import annotations

import hashlib
import re

#: Marks a disambiguated name; plain stems never contain it.
MARK = "~"
#: Hex digits of the SHA-256 appended to a disambiguated name.
HASH_DIGITS = 8
#: The longest plain stem (longer keys are cut and hashed: job names hold at most 200).
MAX_PLAIN = 128
#: How much of a key's readable form a disambiguated stem keeps before its hash.
MAX_READABLE = 100

_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def file_safe(text: str, limit: int | None = None) -> str:
    """`text` as one path segment: `/`, `\\` and control characters made `_`, outer spaces and
    leading dots dropped, cut to `limit` characters (possibly empty)."""
    cleaned = _UNSAFE.sub("_", text).strip().lstrip(".")
    if limit is not None:
        cleaned = cleaned[:limit].rstrip()
    return cleaned


def short_hash(text: str) -> str:
    """8 hex digits of the SHA-256 of `text`."""
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()[:HASH_DIGITS]


def key_stem(key: str, prefix: str = "") -> str:
    """The job-name stem of an object key, one-to-one (see the module docstring)."""
    rest = key[len(prefix) :] if prefix and key.startswith(prefix) else key
    if rest.endswith(".zip") and "/" not in rest:
        stem = rest[: -len(".zip")]
        if stem and len(stem) <= MAX_PLAIN and MARK not in stem and file_safe(stem) == stem:
            return stem
    readable = file_safe(rest, MAX_READABLE) or "object"
    return f"{readable}{MARK}{short_hash(key)}"


def safe_file_name(name: str) -> str:
    """A job name as one path segment, one-to-one: the name when it is safe as it is
    (`images-X`), else its file-safe form with a hash of the name (`a/b` → `a_b~<hash>`)."""
    if name and file_safe(name) == name:
        return name
    return f"{file_safe(name, MAX_READABLE) or 'job'}{MARK}{short_hash(name)}"
