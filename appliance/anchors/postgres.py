"""The Postgres anchor (psycopg 3): one row per checkpoint in a table the appliance's role may only
INSERT into and SELECT from.

`init_postgres` (run once by an administrator: `runlog anchors init-postgres DSN --role NAME`)
creates the table, grants INSERT and SELECT to the appliance's role and nothing else, and adds a
statement-level trigger that refuses UPDATE, DELETE and TRUNCATE for everyone, so even the owner
must drop the trigger first (which leaves a trace in the server's logs and catalog).

Publishing is `INSERT ... ON CONFLICT DO NOTHING` followed by reading the row back in the same
transaction: the same note again is a no-op, a different note for the same size is a fork.
"""

import logging
import re
from collections.abc import Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from appliance.anchors.base import AnchorConfigError, AnchoredCheckpoint, AnchorError, AnchorFork, fork_message
from appliance.core.errors import InvalidInput

log = logging.getLogger("runlog.anchors")

DEFAULT_TABLE = "runlog_checkpoints"
TRIGGER = "runlog_append_only"
FUNCTION = "runlog_refuse_change"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Bits of pg_trigger.tgtype: the trigger must cover DELETE (8), UPDATE (16) and TRUNCATE (32).
_REFUSED_EVENTS = 8 | 16 | 32
_PAGE = 1000


def split_table_name(text: str) -> tuple[str, str]:
    """`table` or `schema.table` as (schema, table); the schema defaults to `public`."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 2 or not all(_IDENTIFIER.fullmatch(p) for p in parts):
        raise InvalidInput(f"table: {text[:80]!r} is not a table name (letters, digits, _; optionally "
                           "schema.table)", field="table")
    return ("public", parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def describe_dsn(dsn: str) -> str:
    """`host:port/dbname` for messages and the anchor's name; never the user or password."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.Error as error:
        raise InvalidInput(f"not a Postgres connection string: {error}", field="dsn") from None
    return f"{info.get('host') or 'localhost'}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


class PostgresAnchor:
    """Checkpoints of `origin` as rows of `table` in the database `dsn` names."""

    def __init__(self, dsn: str, *, origin: str, table: str = DEFAULT_TABLE, connect_timeout: int = 5) -> None:
        self.origin = origin
        self._schema, self._table_name = split_table_name(table)
        self._table = sql.Identifier(self._schema, self._table_name)
        self._dsn, self._timeout = dsn, connect_timeout
        self.name = f"postgres:{describe_dsn(dsn)}/{self._schema}.{self._table_name}"
        self._warned = False

    def _connect(self) -> psycopg.Connection:
        try:
            return psycopg.connect(self._dsn, connect_timeout=self._timeout, application_name="runlog-anchor")
        except psycopg.Error as error:
            raise AnchorError(f"{self.name}: cannot connect: {error}") from error

    def _check_table(self, conn: psycopg.Connection) -> None:
        """Refuse a table without the append-only trigger; warn once if our role could still
        change rows (it owns the table, is a superuser, or holds UPDATE/DELETE/TRUNCATE)."""
        qualified = f"{self._schema}.{self._table_name}"
        row = conn.execute(
            """SELECT c.oid IS NOT NULL,
                      EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = %s
                              AND t.tgenabled <> 'D' AND t.tgtype & %s = %s),
                      pg_get_userbyid(c.relowner) = current_user
                        OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
                        OR has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE')
                        OR has_table_privilege(c.oid, 'TRUNCATE')
               FROM (SELECT to_regclass(%s) AS oid) r LEFT JOIN pg_class c ON c.oid = r.oid""",
            (TRIGGER, _REFUSED_EVENTS, _REFUSED_EVENTS, f'"{self._schema}"."{self._table_name}"'),
        ).fetchone()
        exists, guarded, can_change = row if row is not None else (False, False, False)
        if not exists:
            raise AnchorConfigError(f"{self.name}: table {qualified} does not exist; create it with "
                                    "`runlog anchors init-postgres DSN --role ROLE`")
        if not guarded:
            raise AnchorConfigError(f"{self.name}: table {qualified} lacks its enabled {TRIGGER} trigger, so "
                                    "anchored rows could be changed; run `runlog anchors init-postgres` again")
        if can_change and not self._warned:
            self._warned = True
            log.warning("%s: this role owns %s, is a superuser or may UPDATE/DELETE/TRUNCATE it, so only the "
                        "trigger protects anchored rows; give the appliance a role limited to INSERT and SELECT",
                        self.name, qualified)

    def publish(self, checkpoint: AnchoredCheckpoint) -> str:
        root = checkpoint.checkpoint().root_hash
        location = f"{self.name} (origin, size) = ({checkpoint.origin}, {checkpoint.size})"
        insert = sql.SQL("INSERT INTO {} (origin, size, root, note) VALUES (%s, %s, %s, %s) "
                         "ON CONFLICT (origin, size) DO NOTHING").format(self._table)
        select = sql.SQL("SELECT note FROM {} WHERE origin = %s AND size = %s").format(self._table)
        try:
            with self._connect() as conn:
                self._check_table(conn)
                conn.execute(insert, (checkpoint.origin, checkpoint.size, root, checkpoint.note))
                row = conn.execute(select, (checkpoint.origin, checkpoint.size)).fetchone()
        except psycopg.Error as error:
            raise AnchorError(f"{self.name}: {error}") from error
        if row is None:
            raise AnchorError(f"{self.name}: the row for size {checkpoint.size} is not readable after inserting it")
        if row[0] != checkpoint.note:
            raise AnchorFork(fork_message(self.name, checkpoint.size, row[0], checkpoint.note), size=checkpoint.size)
        return location

    def _select(self, query: sql.Composable, params: tuple) -> list[tuple]:
        try:
            with self._connect() as conn:
                return conn.execute(query, params).fetchall()
        except psycopg.Error as error:
            raise AnchorError(f"{self.name}: {error}") from error

    def fetch(self, size: int) -> AnchoredCheckpoint | None:
        rows = self._select(sql.SQL("SELECT note FROM {} WHERE origin = %s AND size = %s").format(self._table),
                            (self.origin, size))
        return AnchoredCheckpoint(self.origin, size, rows[0][0]) if rows else None

    def latest(self) -> AnchoredCheckpoint | None:
        rows = self._select(sql.SQL("SELECT size, note FROM {} WHERE origin = %s ORDER BY size DESC LIMIT 1")
                            .format(self._table), (self.origin,))
        return AnchoredCheckpoint(self.origin, rows[0][0], rows[0][1]) if rows else None

    def checkpoints(self) -> Iterator[AnchoredCheckpoint]:
        query = sql.SQL("SELECT size, note FROM {} WHERE origin = %s AND size > %s ORDER BY size LIMIT %s"
                        ).format(self._table)
        after = -1
        while True:
            rows = self._select(query, (self.origin, after, _PAGE))
            for size, note in rows:
                yield AnchoredCheckpoint(self.origin, size, note)
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]


def init_postgres(dsn: str, *, table: str = DEFAULT_TABLE, role: str | None = None) -> list[str]:
    """Create (or complete) the anchor table, its trigger and the appliance role's grants, in one
    transaction; return what was done. Idempotent. Needs a role that may create tables.

    Refuses (`AnchorConfigError`) a `role` that does not exist, is a superuser, or is the role
    running this (the table's owner): grants do not bind them."""
    schema, name = split_table_name(table)
    qualified = sql.Identifier(schema, name)
    done: list[str] = []
    try:
        with psycopg.connect(dsn, connect_timeout=10, application_name="runlog-init") as conn:
            if role is not None:
                found = conn.execute("SELECT rolsuper, rolname = current_user FROM pg_roles WHERE rolname = %s",
                                     (role,)).fetchone()
                if found is None:
                    raise AnchorConfigError(f"role {role!r} does not exist; create it first "
                                            f"(CREATE ROLE {role} LOGIN PASSWORD '...')")
                if found[0] or found[1]:
                    raise AnchorConfigError(f"role {role!r} is a superuser or the role running this command (the "
                                            "table's owner); grants do not restrict it: use a separate role")
            conn.execute(sql.SQL(
                """CREATE TABLE IF NOT EXISTS {} (
                    origin text NOT NULL,
                    size bigint NOT NULL CHECK (size >= 0),
                    root bytea NOT NULL CHECK (octet_length(root) = 32),
                    note text NOT NULL,
                    anchored_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (origin, size))""").format(qualified))
            done.append(f"table {schema}.{name}")
            conn.execute(sql.SQL(
                """CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    RAISE EXCEPTION 'runlog: % on %.% is refused: anchored checkpoints are append-only',
                        TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';
                END $$""").format(sql.Identifier(schema, FUNCTION)))
            conn.execute(sql.SQL("CREATE OR REPLACE TRIGGER {} BEFORE UPDATE OR DELETE OR TRUNCATE ON {} "
                                 "FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(
                sql.Identifier(TRIGGER), qualified, sql.Identifier(schema, FUNCTION)))
            done.append(f"trigger {TRIGGER} refusing UPDATE, DELETE and TRUNCATE")
            conn.execute(sql.SQL("REVOKE ALL ON {} FROM PUBLIC").format(qualified))
            if role is not None:
                conn.execute(sql.SQL("REVOKE ALL ON {} FROM {}").format(qualified, sql.Identifier(role)))
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema),
                                                                              sql.Identifier(role)))
                conn.execute(sql.SQL("GRANT SELECT, INSERT ON {} TO {}").format(qualified, sql.Identifier(role)))
                done.append(f"role {role} may only SELECT and INSERT")
    except psycopg.Error as error:
        raise AnchorError(f"{describe_dsn(dsn)}: {error}") from error
    return done
