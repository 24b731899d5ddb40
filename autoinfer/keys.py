"""API keys: roles, the access policy, and the `api_keys` table holding only their hashes.

A key is `ai_` + 32 random bytes (URL-safe base64), shown once when created. Only its SHA-256
is stored: the keys are high-entropy, so an unsalted fast hash cannot be reversed by guessing.
The service's bootstrap key (`<data_dir>/api_key`, `AUTOINFER_API_KEY` or `api_key:`) is not in
the table; it always has the `admin` role.
"""

from __future__ import annotations

import hashlib
import hmac
import posixpath
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel
from sqlalchemy import Index, String, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from autoinfer.errors import AuthError, ConfigError, Conflict, Forbidden, NotFound
from autoinfer.orm import Base, UTCDateTime, utcnow

if TYPE_CHECKING:
    from autoinfer.db import Database

KEY_PREFIX = "ai_"
BOOTSTRAP_NAME = "bootstrap"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")
#: `last_used_at` is written at most this often per key, so reads do not all become writes.
LAST_USED_RESOLUTION = timedelta(seconds=60)


class Role(StrEnum):
    """What a key may do; each role includes the ones before it."""

    READ = "read"  # list and view
    SUBMIT = "submit"  # also create, stop and retry jobs, post events
    # Also jobs that run worker commands, where `worker_commands_role: code` asks for it
    # (autoinfer.sandbox.admission); otherwise the same as submit.
    CODE = "code"
    ADMIN = "admin"  # also keys, secrets and trigger changes

    def allows(self, needed: Role) -> bool:
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.READ: 0, Role.SUBMIT: 1, Role.CODE: 2, Role.ADMIN: 3}
_READ_METHODS = frozenset({"GET", "HEAD"})
_ADMIN_PREFIXES = ("/v1/keys", "/v1/secrets")  # every method, reads included
_ADMIN_WRITE_PREFIXES = ("/v1/triggers",)  # changes only; listing triggers is a read


def required_role(method: str, path: str) -> Role:
    """The access policy of the whole API: the least role that may send `method` to `path`."""
    normalized = posixpath.normpath("/" + path.strip("/")).casefold()
    if _under(normalized, _ADMIN_PREFIXES):
        return Role.ADMIN
    if method.upper() in _READ_METHODS:
        return Role.READ
    if _under(normalized, _ADMIN_WRITE_PREFIXES):
        return Role.ADMIN
    return Role.SUBMIT


def _under(path: str, prefixes: tuple[str, ...]) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in prefixes)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


# --- the table and its records ----------------------------------------------------------


class KeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    __table_args__ = (
        # A name belongs to at most one live key; revoked keys keep theirs for the record.
        Index(
            "ux_api_keys_live_name",
            "name",
            unique=True,
            sqlite_where=text("revoked_at IS NULL"),
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )


class KeyRecord(BaseModel):
    """A key as listed: never the key itself, nor its hash."""

    id: str
    name: str
    role: Role
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class CreatedKey(KeyRecord):
    """A key just created: the only time `key` is ever returned."""

    key: str


@dataclass(frozen=True)
class Principal:
    """Who sent a request: the key's id (None for the bootstrap key), name and role."""

    id: str | None
    name: str
    role: Role


def _record(row: KeyRow) -> KeyRecord:
    return KeyRecord(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


# --- the service side -------------------------------------------------------------------


class Keys:
    """Creates, lists, revokes and checks API keys; `authorize` is the API's one access check."""

    def __init__(self, db: Database, bootstrap: str | None = None) -> None:
        self.db = db
        self.bootstrap = bootstrap

    def create(self, name: str, role: Role | str = Role.READ) -> CreatedKey:
        """A new random key; Conflict if a live key already has `name`."""
        if not NAME_PATTERN.match(name):
            raise ConfigError(
                f"key name {name!r}: use 1-100 letters, digits, '.', '_', '@' or '-', "
                "starting with a letter or digit"
            )
        role = _role(role)
        key = new_key()
        row = KeyRow(
            id="key_" + secrets.token_hex(8), name=name, role=role.value, key_hash=hash_key(key)
        )
        try:
            with self.db.session() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict(
                f"key {name!r}: a live key with this name exists; revoke it first"
            ) from None
        return CreatedKey(**_record(row).model_dump(), key=key)

    def list(self, *, include_revoked: bool = True) -> list[KeyRecord]:
        """Every key, oldest first."""
        statement = select(KeyRow).order_by(KeyRow.created_at, KeyRow.id)
        if not include_revoked:
            statement = statement.where(KeyRow.revoked_at.is_(None))
        with self.db.session() as session:
            return [_record(row) for row in session.scalars(statement)]

    def revoke(self, ref: str) -> KeyRecord:
        """Revoke the key with id `ref`, or the live key named `ref`; revoking twice is a no-op."""
        with self.db.session() as session:
            row = (
                session.get(KeyRow, ref)
                or session.scalars(
                    select(KeyRow)
                    .where(KeyRow.name == ref)
                    .order_by(KeyRow.revoked_at.is_not(None), KeyRow.created_at.desc())
                    .limit(1)
                ).first()
            )
            if row is None:
                raise NotFound(f"key {ref!r}: no key with this name or id")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return _record(row)

    def authenticate(self, token: str) -> Principal:
        """Who `token` belongs to; AuthError if it is unknown or revoked."""
        if self.bootstrap and hmac.compare_digest(token.encode(), self.bootstrap.encode()):
            return Principal(id=None, name=BOOTSTRAP_NAME, role=Role.ADMIN)
        digest = hash_key(token)
        with self.db.session() as session:
            row = session.scalars(select(KeyRow).where(KeyRow.key_hash == digest)).first()
            if row is None or not hmac.compare_digest(row.key_hash.encode(), digest.encode()):
                raise AuthError("invalid API key")
            if row.revoked_at is not None:
                raise AuthError(f"API key {row.name!r} was revoked")
            now = utcnow()
            if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
                row.last_used_at = now
            return Principal(id=row.id, name=row.name, role=Role(row.role))

    def authorize(
        self, token: str, method: str, path: str, *, shown_path: str | None = None
    ) -> Principal:
        """The principal of `token` if its role allows `method path`; AuthError or Forbidden
        (whose message names `shown_path`, default `path`)."""
        principal = self.authenticate(token)
        needed = required_role(method, path)
        if not principal.role.allows(needed):
            raise Forbidden(
                f"this key's role '{principal.role.value}' cannot {method.upper()} {shown_path or path} "
                f"(needs {needed.value})"
            )
        return principal


def _role(value: Role | str) -> Role:
    try:
        return Role(value)
    except ValueError:
        choices = ", ".join(role.value for role in Role)
        raise ConfigError(f"role {value!r}: must be one of {choices}") from None
