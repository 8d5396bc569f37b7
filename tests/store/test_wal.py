"""The WAL reserve (appliance/store/wal.py): room in the WAL file, written and synced, before any
commit needs it, so that commits overwrite blocks instead of growing the file; SQLite must read
the store the same with the zeros after its frames, also after a crash."""

import errno
import os
import shutil
import sqlite3

import pytest

from appliance.store.db import StoreError, connect, migrate
from appliance.store.wal import WAL_RESERVE_BYTES, WalReserve, reserve_wal, wal_path

RESERVE = 1024 * 1024


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "store.sqlite"
    conn = connect(path)
    conn.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    yield path, conn
    conn.close()


def crash_copy(path, into):
    """The store's files as a crash would leave them (the connection still open, no -shm)."""
    into.mkdir()
    for suffix in ("", "-wal"):
        shutil.copyfile(f"{path}{suffix}", into / f"{path.name}{suffix}")
    return into / path.name


def rows(path):
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [n for (n,) in conn.execute("SELECT n FROM rows ORDER BY n")]
    finally:
        conn.close()


def test_the_reserve_is_written_zeros_after_what_the_wal_held(store):
    path, conn = store
    before = wal_path(path).read_bytes()
    assert reserve_wal(conn, path, RESERVE) == RESERVE - len(before)
    data = wal_path(path).read_bytes()
    assert len(data) == RESERVE and data.startswith(before) and data[len(before):] == bytes(RESERVE - len(before))
    assert wal_path(path).stat().st_blocks * 512 >= RESERVE  # allocated: no hole left for a commit to fill
    assert reserve_wal(conn, path, RESERVE) == 0 and wal_path(path).read_bytes() == data
    assert not conn.in_transaction


def test_commits_within_the_reserve_do_not_grow_the_wal(store):
    path, conn = store
    reserve_wal(conn, path, RESERVE)
    for n in range(100):  # ~100 frames of 4 KiB: well inside 1 MiB
        conn.execute("INSERT INTO rows VALUES (?, ?)", (n, bytes(1000)))
    assert wal_path(path).stat().st_size == RESERVE
    assert rows(path) == list(range(100))


def test_a_crash_after_commits_into_the_reserve_recovers_every_commit(store, tmp_path):
    path, conn = store
    conn.execute("INSERT INTO rows VALUES (0, x'00')")
    reserve_wal(conn, path, RESERVE)  # frames before the zeros, then commits over them
    for n in range(1, 50):
        conn.execute("INSERT INTO rows VALUES (?, ?)", (n, bytes(1000)))
    assert rows(crash_copy(path, tmp_path / "crashed")) == list(range(50))


def test_a_crash_right_after_reserving_leaves_the_store_as_it_was(tmp_path):
    path = tmp_path / "store.sqlite"
    conn = connect(path)
    migrate(conn)
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    conn.close()  # the last connection checkpoints and deletes the WAL
    conn = connect(path)
    try:
        reserve_wal(conn, path, RESERVE)
        assert set(wal_path(path).read_bytes()) == {0}  # a WAL of zeros has no header: it is empty
        copy = crash_copy(path, tmp_path / "crashed")
    finally:
        conn.close()
    reopened = connect(copy)
    try:
        assert reopened.execute("PRAGMA user_version").fetchone()[0] == version
        assert reopened.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        reopened.close()


def test_another_connection_cannot_commit_while_the_reserve_is_written(store, monkeypatch):
    path, conn = store
    other = connect(path)
    other.execute("PRAGMA busy_timeout = 0")
    seen = []

    def extend(wal, size):
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            other.execute("INSERT INTO rows VALUES (1, x'00')")
        seen.append(size)
        return 0

    monkeypatch.setattr("appliance.store.wal._extend", extend)
    reserve_wal(conn, path, RESERVE)
    other.execute("INSERT INTO rows VALUES (1, x'00')")  # the write lock is released afterwards
    other.close()
    assert seen == [RESERVE]


def test_a_store_not_in_wal_mode_is_refused(tmp_path):
    path = tmp_path / "rollback.sqlite"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE t (x)")
    with pytest.raises(StoreError, match="not in WAL mode"):
        reserve_wal(conn, path, RESERVE)
    assert not conn.in_transaction and not wal_path(path).exists()
    conn.close()



def test_a_commit_that_outgrew_the_reserve_makes_it_twice_as_large(store):
    path, conn = store
    reserve = WalReserve(conn, path, 64 * 1024)
    conn.execute("INSERT INTO rows VALUES (0, x'00')")
    reserve.after_commit()
    assert reserve.size == 64 * 1024 == wal_path(path).stat().st_size  # the commit fitted: nothing to do
    conn.execute("INSERT INTO rows VALUES (1, ?)", (bytes(200_000),))  # ~50 frames: past 64 KiB
    grown = wal_path(path).stat().st_size
    reserve.after_commit()
    assert grown > 64 * 1024 and reserve.size == 2 * grown == wal_path(path).stat().st_size
    assert rows(path) == [0, 1]


def _no_room(fd, data, offset):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_disk_that_cannot_give_the_room_is_logged_and_the_store_works_as_without(store, monkeypatch, caplog):
    path, conn = store

    monkeypatch.setattr("appliance.store.wal.os.pwrite", _no_room)
    reserve = WalReserve(conn, path, 64 * 1024)
    assert "could not reserve" in caplog.text and not conn.in_transaction
    conn.execute("INSERT INTO rows VALUES (0, ?)", (bytes(200_000),))
    reserve.after_commit()  # outgrown, and still no room: logged again, nothing raised
    assert caplog.text.count("could not reserve") == 2 and rows(path) == [0]


def test_a_reserve_the_disk_gives_only_in_part_is_given_back(store, monkeypatch, caplog):
    path, conn = store
    conn.execute("INSERT INTO rows VALUES (0, x'00')")
    before = wal_path(path).read_bytes()
    real, calls = os.pwrite, []

    def first_chunk_only(fd, data, offset):
        calls.append(offset)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data[:RESERVE // 4], offset)

    monkeypatch.setattr("appliance.store.wal.os.pwrite", first_chunk_only)
    reserve = WalReserve(conn, path, RESERVE)
    assert len(calls) == 2 and "could not reserve" in caplog.text
    assert wal_path(path).read_bytes() == before and reserve.size == len(before), "the zeros written were given back"
    conn.execute("INSERT INTO rows VALUES (1, x'00')")
    assert rows(path) == [0, 1]


def test_the_reserve_leaves_as_much_free_as_the_wal_it_makes(store, monkeypatch):
    # Free space after the reserve is what a checkpoint may need to copy the WAL into the database.
    path, conn = store
    held = wal_path(path).stat().st_size
    needed = RESERVE - held
    for free, made in ((RESERVE + needed - 1, False), (RESERVE + needed, True)):
        monkeypatch.setattr("appliance.store.wal.shutil.disk_usage", lambda _, free=free: shutil._ntuple_diskusage(
            10 * RESERVE, 10 * RESERVE - free, free))
        if made:
            assert reserve_wal(conn, path, RESERVE) == needed
        else:
            with pytest.raises(StoreError, match=f"{free:,} bytes free: reserving {needed:,} would leave less"):
                reserve_wal(conn, path, RESERVE)
            assert wal_path(path).stat().st_size == held and not conn.in_transaction


def test_a_wal_cut_short_behind_the_reserves_back_is_reserved_again(store, caplog):
    path, conn = store
    reserve = WalReserve(conn, path, 64 * 1024)
    other = connect(path)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # what an operator's sqlite3 shell might do
    other.close()
    conn.execute("INSERT INTO rows VALUES (0, x'00')")  # this one commit grew the WAL from nothing
    assert wal_path(path).stat().st_size < 64 * 1024
    reserve.after_commit()
    assert reserve.size == 64 * 1024 == wal_path(path).stat().st_size
    assert "shorter than its reserve" in caplog.text and rows(path) == [0]


def test_a_reserve_the_disk_refuses_is_tried_again_only_once_the_wal_changed_size(store, monkeypatch, caplog):
    path, conn = store
    monkeypatch.setattr("appliance.store.wal.os.pwrite", _no_room)
    reserve = WalReserve(conn, path, 64 * 1024)
    for _ in range(3):
        reserve.after_commit()  # nothing committed: the WAL has not changed, nothing tried
    assert caplog.text.count("could not reserve") == 1 and reserve.size == wal_path(path).stat().st_size
    conn.execute("INSERT INTO rows VALUES (0, x'00')")
    reserve.after_commit()
    assert caplog.text.count("could not reserve") == 2

def test_a_started_writer_has_its_wal_reserved_before_the_first_commit(tmp_path):
    from appliance.core.keys import generate_signer
    from appliance.store.writer import Writer

    path = tmp_path / "runlog.sqlite"
    writer = Writer(path, origin="runlog.test/log", signer=generate_signer("runlog.test/log", seed=b"\x07" * 32))
    writer.start()
    try:
        assert wal_path(path).stat().st_size >= WAL_RESERVE_BYTES
    finally:
        writer.stop()


def test_a_failing_reserve_check_after_commit_never_fails_the_durable_group(tmp_path, caplog):
    from appliance.core.keys import generate_signer
    from appliance.core.sequencer import Event
    from appliance.store.writer import AppendRequest, Writer

    path = tmp_path / "runlog.sqlite"
    writer = Writer(path, origin="runlog.test/log", signer=generate_signer("runlog.test/log", seed=b"\x07" * 32))
    writer.start()
    try:
        def broken() -> None:
            raise OSError(5, "Input/output error")

        writer._wal.after_commit = broken
        event = Event("4bf92f3577b34da6a3ce929d0e0e4736", "build", "info", "2026-11-29T01:00:00Z", "ci")
        result = writer.append_sync(AppendRequest([event], "ci"))
        assert result.first_seq == 0 and writer.size == 1 and writer.last_failure is None
        assert "could not check the WAL's reserve" in caplog.text
    finally:
        writer.stop()
