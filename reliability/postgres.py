"""A Postgres anchor table of its own for one reliability run: a fresh table and a role limited to
INSERT and SELECT (as `runlog anchors init-postgres` makes them), dropped afterwards. The machine's
Postgres is shared with other test runs, so nothing here touches anything but its own table."""

import os
import uuid

import psycopg
from psycopg.conninfo import make_conninfo

from appliance.anchors.postgres import init_postgres

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def admin_dsn() -> str:
    return os.environ.get("RUNLOG_TEST_POSTGRES_DSN", DEFAULT_DSN)


def postgres_available(dsn: str | None = None) -> bool:
    try:
        psycopg.connect(dsn or admin_dsn(), connect_timeout=3).close()
        return True
    except psycopg.Error:
        return False


class PostgresTable:
    """`with PostgresTable() as pg:` gives `pg.env` (the anchor settings for `runlog serve`)."""

    def __init__(self, dsn: str | None = None) -> None:
        self.admin = dsn or admin_dsn()
        suffix = uuid.uuid4().hex[:10]
        self.table, self.role = f"runlog_rel_{suffix}", f"runlog_rel_app_{suffix}"
        self.app_dsn = make_conninfo(self.admin, user=self.role, connect_timeout=5)

    def __enter__(self) -> "PostgresTable":
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE ROLE "{self.role}" LOGIN')
        init_postgres(self.admin, table=self.table, role=self.role)
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.admin, autocommit=True, connect_timeout=30) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{self.table}"')
            conn.execute(f'DROP OWNED BY "{self.role}"')
            conn.execute(f'DROP ROLE "{self.role}"')

    @property
    def env(self) -> dict[str, str]:
        return {"RUNLOG_ANCHOR_POSTGRES_DSN": self.app_dsn, "RUNLOG_ANCHOR_POSTGRES_TABLE": self.table}

    def rows(self, origin: str) -> list[tuple[int, str]]:
        with psycopg.connect(self.admin, connect_timeout=30) as conn:
            return conn.execute(f'SELECT size, note FROM "{self.table}" WHERE origin = %s ORDER BY size',
                                (origin,)).fetchall()
