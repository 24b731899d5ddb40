"""Secrets: values encrypted at rest (Fernet) in the `secrets` table, and their redaction.

The master key comes from `AUTOINFER_MASTER_KEY` or `<data_dir>/master.key` (created mode 0600
on first start). Configuration and job specs name a secret as `secret:NAME`; its value is
resolved only where it is used (a job's process environment, an S3 client) and every known
value is replaced by `***` in job logs, failure reasons, API errors and the service's log.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import weakref
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken
from pydantic import BaseModel
from sqlalchemy import String, Text, select
from sqlalchemy.orm import Mapped, mapped_column

from autoinfer.errors import ConfigError, NotFound
from autoinfer.orm import Base, UTCDateTime, utcnow

if TYPE_CHECKING:
    from autoinfer.db import Database

MASTER_KEY_ENV = "AUTOINFER_MASTER_KEY"
MASTER_KEY_FILE = "master.key"
ENV_FALLBACK_PREFIX = "AUTOINFER_SECRET_"
MASK = "***"
#: Shorter values are not redacted: masking every "a" or "42" would garble logs and hide nothing.
MIN_REDACTED_LENGTH = 4
MAX_VALUE_BYTES = 64 * 1024
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")

log = logging.getLogger("autoinfer.secrets")


def env_name(name: str) -> str:
    """The environment variable that supplies secret `name` when it is not stored."""
    return ENV_FALLBACK_PREFIX + name.upper().replace("-", "_").replace(".", "_")


def env_secret_values() -> list[str]:
    """The values of every `AUTOINFER_SECRET_*` variable: secrets too, to be redacted."""
    return [value for key, value in os.environ.items() if key.startswith(ENV_FALLBACK_PREFIX)]


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise ConfigError(
            f"secret name {name!r}: use 1-128 letters, digits, '_', '.' or '-', "
            "not starting with '.' or '-'"
        )
    return name


# --- the master key ---------------------------------------------------------------------


def load_master_key(data_dir: Path, env: dict[str, str] | None = None) -> Fernet:
    """The Fernet of `AUTOINFER_MASTER_KEY`, else of `<data_dir>/master.key` (created 0600)."""
    environ = os.environ if env is None else env
    given = environ.get(MASTER_KEY_ENV)
    if given:
        return _fernet(given.strip(), MASTER_KEY_ENV)
    path = data_dir / MASTER_KEY_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "%s is readable by other users (mode %o); run: chmod 600 %s", path, mode, path
            )
        return _fernet(path.read_text().strip(), str(path))
    with os.fdopen(fd, "w") as handle:
        handle.write(Fernet.generate_key().decode() + "\n")
    return _fernet(path.read_text().strip(), str(path))


def _fernet(key: str, where: str) -> Fernet:
    try:
        return Fernet(key.encode())
    except ValueError:
        raise ConfigError(
            f"{where}: not a master key (32 url-safe base64-encoded bytes; "
            "make one with `python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
        ) from None


# --- redaction --------------------------------------------------------------------------


class Redactor:
    """Replaces every registered value by `***`. Values are only ever added: a secret that was
    changed or removed may still sit in a running job's memory, so its old value stays hidden."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.add(*values)

    def add(self, *values: str) -> None:
        fresh = set()
        for value in values:
            # A multi-line value is also hidden line by line: logs are written a line at a time.
            for part in (value, *value.splitlines()):
                if len(part.strip()) >= MIN_REDACTED_LENGTH and part not in self._values:
                    fresh.add(part)
        if not fresh:
            return
        with self._lock:
            self._values |= fresh
            ordered = sorted(self._values, key=len, reverse=True)  # longest first wins
            self._pattern = re.compile("|".join(re.escape(value) for value in ordered))

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)


class RedactingFilter(logging.Filter):
    """Redacts a log record's message (and its exception text) with every live `Redactor`."""

    def __init__(self) -> None:
        super().__init__()
        self._redactors: weakref.WeakSet[Redactor] = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, redactor: Redactor) -> None:
        with self._lock:
            self._redactors.add(redactor)

    def _live(self) -> list[Redactor]:
        with self._lock:
            return [redactor for redactor in self._redactors if redactor]

    def redact(self, text: str) -> str:
        for redactor in self._live():
            text = redactor(text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._live():
            return True
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is reported by the handler, not here
            return True
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_text is None:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


_log_filter = RedactingFilter()
_install_lock = threading.Lock()
_installed = threading.Event()  # set once the record factory is in place


def install_log_redaction(redactor: Redactor) -> RedactingFilter:
    """Redact `redactor`'s values in every log record of this process, for as long as it lives.

    A filter on the root logger would not see records that child loggers propagate to the root
    handlers, nor those of loggers that do not propagate (uvicorn's), so the filter is applied
    where every record is made: the log record factory. It is also added to the root logger.
    """
    _log_filter.add(redactor)
    with _install_lock:
        if _installed.is_set():
            return _log_filter
        previous = logging.getLogRecordFactory()

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _log_filter.filter(record)
            return record

        logging.setLogRecordFactory(make_record)
        logging.getLogger().addFilter(_log_filter)
        _installed.set()
    return _log_filter


# --- the store --------------------------------------------------------------------------


class SecretRow(Base):
    __tablename__ = "secrets"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    ciphertext: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SecretInfo(BaseModel):
    """A secret as listed: its name and times, never its value."""

    name: str
    created_at: datetime
    updated_at: datetime


class Secrets:
    """Encrypted secrets in the database, resolved by name, with the `Redactor` of their values.

    `resolve(name)` falls back to the environment variable `AUTOINFER_SECRET_<NAME>`.
    """

    def __init__(self, db: Database, fernet: Fernet, redactor: Redactor | None = None) -> None:
        self.db = db
        self._fernet = fernet
        self.redactor = redactor or Redactor()
        self.redactor.add(*env_secret_values())
        self._load_all()

    def set(self, name: str, value: str) -> SecretInfo:
        """Store (or replace) secret `name`, encrypted."""
        check_name(name)
        if not value:
            raise ConfigError(f"secret {name!r}: the value is empty")
        if len(value.encode()) > MAX_VALUE_BYTES:
            raise ConfigError(f"secret {name!r}: the value is over {MAX_VALUE_BYTES} bytes")
        self.redactor.add(value)
        ciphertext = self._fernet.encrypt(value.encode()).decode()
        now = utcnow()
        with self.db.session() as session:
            row = session.get(SecretRow, name)
            if row is None:
                row = SecretRow(name=name, ciphertext=ciphertext, created_at=now, updated_at=now)
                session.add(row)
            else:
                row.ciphertext, row.updated_at = ciphertext, now
            return SecretInfo(name=row.name, created_at=row.created_at, updated_at=row.updated_at)

    def get(self, name: str) -> str | None:
        """The stored value of `name` (None if none is stored); ConfigError if it cannot be decrypted."""
        with self.db.session() as session:
            row = session.get(SecretRow, name)
            ciphertext = None if row is None else row.ciphertext
        if ciphertext is None:
            return None
        value = self._decrypt(name, ciphertext)
        self.redactor.add(value)
        return value

    def resolve(self, name: str) -> str:
        """The value of `name`: stored, else `AUTOINFER_SECRET_<NAME>`; ConfigError naming it."""
        value = self.get(name)
        if value is not None:
            return value
        fallback = os.environ.get(env_name(name))
        if fallback is not None:
            self.redactor.add(fallback)
            return fallback
        raise ConfigError(
            f"secret {name!r} is not set (run `autoinfer secrets set {name}`, or set {env_name(name)})"
        )

    def list(self) -> list[SecretInfo]:
        """Every stored secret by name; never a value."""
        with self.db.session() as session:
            rows = session.scalars(select(SecretRow).order_by(SecretRow.name))
            return [
                SecretInfo(name=r.name, created_at=r.created_at, updated_at=r.updated_at)
                for r in rows
            ]

    def remove(self, name: str) -> None:
        """Delete secret `name`; NotFound if it is not stored."""
        with self.db.session() as session:
            row = session.get(SecretRow, name)
            if row is None:
                raise NotFound(f"secret {name!r}: no such secret")
            session.delete(row)

    def _decrypt(self, name: str, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise ConfigError(
                f"secret {name!r}: cannot be decrypted with this master key "
                f"(was {MASTER_KEY_FILE} or {MASTER_KEY_ENV} changed?)"
            ) from None

    def _load_all(self) -> None:
        """Register every stored value for redaction; report (not fail on) undecryptable ones."""
        with self.db.session() as session:
            rows = [(row.name, row.ciphertext) for row in session.scalars(select(SecretRow))]
        for name, ciphertext in rows:
            try:
                self.redactor.add(self._decrypt(name, ciphertext))
            except ConfigError as error:
                log.error("%s", error)
