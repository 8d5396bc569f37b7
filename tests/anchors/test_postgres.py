"""The Postgres anchor against the machine's Postgres: the appliance's role can only INSERT and
SELECT, the trigger refuses UPDATE/DELETE/TRUNCATE even to the owner, publishing is idempotent and
a different checkpoint for the same size is a fork."""

import psycopg
import pytest

from appliance.anchors.base import AnchorConfigError, AnchoredCheckpoint, AnchorError, AnchorFork
from appliance.anchors.postgres import PostgresAnchor, describe_dsn, init_postgres, split_table_name
from appliance.core.errors import InvalidInput
from tests.anchors.conftest import ORIGIN, note_for


@pytest.fixture
def anchor(pg):
    init_postgres(pg["dsn"], table=pg["table"], role=pg["role"])
    return PostgresAnchor(pg["role_dsn"], origin=ORIGIN, table=pg["table"])


def test_init_creates_table_trigger_and_insert_select_grants_idempotently(pg):
    done = init_postgres(pg["dsn"], table=pg["table"], role=pg["role"])
    assert done == [f"table public.{pg['table']}", "trigger runlog_append_only refusing UPDATE, DELETE and TRUNCATE",
                    f"role {pg['role']} may only SELECT and INSERT"]
    assert init_postgres(pg["dsn"], table=pg["table"], role=pg["role"]) == done
    with psycopg.connect(pg["dsn"]) as conn:
        privileges = conn.execute("SELECT privilege_type FROM information_schema.role_table_grants "
                                  "WHERE grantee = %s AND table_name = %s ORDER BY 1", (pg["role"], pg["table"])).fetchall()
    assert privileges == [("INSERT",), ("SELECT",)]


def test_publish_is_idempotent_and_readable(anchor, pg):
    note = note_for(3)
    location = anchor.publish(AnchoredCheckpoint(ORIGIN, 3, note))
    assert anchor.publish(AnchoredCheckpoint(ORIGIN, 3, note)) == location
    assert pg["table"] in location and "(origin, size) = (test.example/anchors, 3)" in location
    anchor.publish(AnchoredCheckpoint(ORIGIN, 9, note_for(9)))
    assert anchor.fetch(3) == AnchoredCheckpoint(ORIGIN, 3, note) and anchor.fetch(4) is None
    assert anchor.latest().size == 9
    assert [c.size for c in anchor.checkpoints()] == [3, 9]
    with psycopg.connect(pg["dsn"]) as conn:
        rows = conn.execute(f'SELECT origin, size, root, note, anchored_at IS NOT NULL FROM "{pg["table"]}" ORDER BY size').fetchall()
    assert rows[0] == (ORIGIN, 3, (3).to_bytes(32, "big"), note, True) and len(rows) == 2


def test_a_different_checkpoint_for_the_same_size_is_a_fork_and_the_row_stays(anchor):
    ours = note_for(5)
    anchor.publish(AnchoredCheckpoint(ORIGIN, 5, ours))
    with pytest.raises(AnchorFork) as fork:
        anchor.publish(AnchoredCheckpoint(ORIGIN, 5, note_for(5, b"\xee" * 32)))
    assert fork.value.size == 5 and "different root" in str(fork.value)
    assert anchor.fetch(5).note == ours


@pytest.mark.parametrize("statement", [
    'UPDATE "{t}" SET note = \'rewritten\'',
    'DELETE FROM "{t}"',
    'TRUNCATE "{t}"',
    'INSERT INTO "{t}" (origin, size, root, note) VALUES (\'{o}\', 1, decode(repeat(\'00\', 32), \'hex\'), \'x\') '
    'ON CONFLICT (origin, size) DO UPDATE SET note = excluded.note',
])
def test_the_appliance_role_cannot_change_anchored_rows(anchor, pg, statement):
    anchor.publish(AnchoredCheckpoint(ORIGIN, 1, note_for(1)))
    with psycopg.connect(pg["role_dsn"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement.format(t=pg["table"], o=ORIGIN))
    assert anchor.fetch(1).note == note_for(1)


@pytest.mark.parametrize("statement", ['UPDATE "{t}" SET note = \'x\'', 'DELETE FROM "{t}"', 'TRUNCATE "{t}"'])
def test_the_trigger_refuses_changes_even_to_the_owner(anchor, pg, statement):
    anchor.publish(AnchoredCheckpoint(ORIGIN, 1, note_for(1)))
    with psycopg.connect(pg["dsn"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="anchored checkpoints are append-only"):
            conn.execute(statement.format(t=pg["table"]))
    assert anchor.fetch(1) is not None


def test_a_table_without_the_trigger_or_missing_is_refused(pg):
    anchor = PostgresAnchor(pg["dsn"], origin=ORIGIN, table=pg["table"])
    with pytest.raises(AnchorConfigError, match="does not exist"):
        anchor.publish(AnchoredCheckpoint(ORIGIN, 1, note_for(1)))
    init_postgres(pg["dsn"], table=pg["table"])
    with psycopg.connect(pg["dsn"]) as conn:
        conn.execute(f'ALTER TABLE "{pg["table"]}" DISABLE TRIGGER runlog_append_only')
    with pytest.raises(AnchorConfigError, match="lacks its enabled runlog_append_only trigger"):
        anchor.publish(AnchoredCheckpoint(ORIGIN, 1, note_for(1)))


def test_init_refuses_roles_that_grants_do_not_bind(pg):
    with pytest.raises(AnchorConfigError, match="does not exist"):
        init_postgres(pg["dsn"], table=pg["table"], role="no_such_role_runlog")
    with pytest.raises(AnchorConfigError, match="superuser"):
        init_postgres(pg["dsn"], table=pg["table"], role="postgres")


def test_an_unreachable_database_is_an_anchor_error():
    anchor = PostgresAnchor("postgresql://postgres@127.0.0.1:1/test", origin=ORIGIN, connect_timeout=2)
    assert anchor.name == "postgres:127.0.0.1:1/test/public.runlog_checkpoints"
    with pytest.raises(AnchorError, match="cannot connect"):
        anchor.publish(AnchoredCheckpoint(ORIGIN, 1, note_for(1)))
    with pytest.raises(AnchorError):
        anchor.fetch(1)


def test_names_and_dsns_are_checked_and_passwords_never_shown():
    assert split_table_name("audit.checkpoints") == ("audit", "checkpoints")
    for bad in ("", "a.b.c", "1table", "drop table x;", "x-y"):
        with pytest.raises(InvalidInput):
            split_table_name(bad)
    assert describe_dsn("host=db.internal port=6432 dbname=evidence user=app password=hunter2") == \
        "db.internal:6432/evidence"
    with pytest.raises(InvalidInput):
        describe_dsn("not a connection string")


def test_publishing_as_a_role_that_could_change_rows_warns_once(pg, caplog):
    init_postgres(pg["dsn"], table=pg["table"], role=pg["role"])
    owner = PostgresAnchor(pg["dsn"], origin=ORIGIN, table=pg["table"])
    with caplog.at_level("WARNING", logger="runlog.anchors"):
        owner.publish(AnchoredCheckpoint(ORIGIN, 1, note_for(1)))
        owner.publish(AnchoredCheckpoint(ORIGIN, 2, note_for(2)))
    warnings = [r for r in caplog.records if "only the trigger protects" in r.getMessage()]
    assert len(warnings) == 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="runlog.anchors"):
        PostgresAnchor(pg["role_dsn"], origin=ORIGIN, table=pg["table"]).publish(AnchoredCheckpoint(ORIGIN, 3, note_for(3)))
    assert not caplog.records
