"""The schema registry: imports every table module, so that `metadata` holds every table.

The migrations (`autoinfer.migrations`) compare against this metadata and `autoinfer.retention`
walks it; nothing else needs to know which modules define tables. A new table module is added
here, and a migration for it under `autoinfer/migrations/versions/` (the test
`test_migrations_match_the_models` fails until both agree).
"""

from __future__ import annotations

from sqlalchemy import MetaData

from autoinfer import keys, secrets
from autoinfer.inbox import tables as inbox
from autoinfer.jobs import items, store
from autoinfer.notifications import store as notifications
from autoinfer.orm import Base

#: Every table of the service.
metadata: MetaData = Base.metadata

TABLE_MODULES = (inbox, keys, secrets, store, items, notifications)

__all__ = ["TABLE_MODULES", "metadata"]
