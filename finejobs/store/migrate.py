"""The migrations: the SQL files shipped in finejobs/migrations, applied in order and recorded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import sqlalchemy as sa

from finejobs.errors import (
    SchemaError,
)
from finejobs.store import citus
from finejobs.store._base import StoreBase
from finejobs.store.tables import _LOCK_MIGRATE, metadata, migrations_table

_MIGRATION_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def available_migrations() -> list[Migration]:
    """The migrations shipped with this finejobs, in order."""
    found = []
    for entry in resources.files("finejobs.migrations").iterdir():
        match = _MIGRATION_FILE.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda m: m.version)
    return found


class MigrationStore(StoreBase):
    """Schema migrations."""

    def migrate(self, *, target: int | None = None) -> list[int]:
        """Apply missing migrations in order (up to ``target``, default all); returns the versions applied.
        Safe to run concurrently."""
        applied: list[int] = []
        with self.transaction() as conn:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_MIGRATE})
            metadata.create_all(conn, tables=[migrations_table], checkfirst=True)
            done = set(conn.execute(sa.select(migrations_table.c.version)).scalars())
            on_citus = self.citus
            for migration in available_migrations():
                if migration.version in done or (target is not None and migration.version > target):
                    continue
                if on_citus:  # statement by statement (see citus.statements)
                    for stmt in citus.statements(migration.sql):
                        conn.exec_driver_sql(stmt)
                else:
                    conn.exec_driver_sql(migration.sql)
                conn.execute(migrations_table.insert().values(version=migration.version, name=migration.name))
                applied.append(migration.version)
            if on_citus:
                citus.distribute(conn)  # idempotent: the job table distributed by shard (docs/citus.md)
        return applied

    def schema_version(self) -> int | None:
        """The highest applied migration, or None if finejobs was never migrated here."""
        with self.transaction() as conn:
            exists = conn.execute(sa.text("SELECT to_regclass('finejobs_migrations') IS NOT NULL")).scalar()
            if not exists:
                return None
            version = conn.execute(sa.select(sa.func.max(migrations_table.c.version))).scalar()
            return int(version) if version is not None else None

    def check_schema(self) -> None:
        """Raise SchemaError unless the schema is exactly at this finejobs's latest migration."""
        latest = available_migrations()[-1].version
        version = self.schema_version()
        if version is None or version < latest:
            raise SchemaError(
                f"the finejobs schema is not migrated (at {version or 'nothing'}, need {latest}): "
                "run `finejobs migrate`"
            )
        if version > latest:
            raise SchemaError(
                f"the finejobs schema was migrated by a newer finejobs (version {version} > {latest}): "
                "upgrade finejobs"
            )
