"""Run queries against real SQLite stores filled with sequenced, chained entries."""

from datetime import datetime, timezone

import pytest

from appliance.core.entry import decode_entry
from appliance.core.errors import InvalidInput
from appliance.core.hashing import sha256
from appliance.core.keys import generate_signer
from appliance.core.sequencer import Event
from appliance.core.timefmt import parse_utc
from appliance.store.db import connect
from appliance.store.runs import (
    RunSummary,
    encode_cursor,
    find_runs_by_prefix,
    get_entry,
    get_run,
    list_runs,
    run_events,
)
from appliance.store.writer import AppendRequest, Writer

ORIGIN = "runlog.test/log"
SIGNER = generate_signer(ORIGIN, seed=b"\x05" * 32)

RUN_A = "a" * 31 + "1"
RUN_B = "b" * 31 + "2"


class Log:
    """The real single writer, with a clock the test sets before each append."""

    def __init__(self, path):
        self.now = datetime(2026, 11, 28, tzinfo=timezone.utc)
        self.writer = Writer(path, origin=ORIGIN, signer=SIGNER, clock=lambda: self.now)
        self.writer.start()

    def append(self, events, received_at):
        """Append `events` as one request received at `received_at`; return their entry hashes."""
        self.now = parse_utc(received_at)
        result = self.writer.append_sync(AppendRequest(list(events), events[0].source))
        assert result.received_at == received_at
        return result.entry_hashes


def event(trace_id, step, status="info", ts="2026-11-28T09:00:00Z", source="ci", **kwargs):
    return Event(trace_id=trace_id, step=step, status=status, ts=ts, source=source, **kwargs)


def trace(n):
    return f"{n:032x}".replace("0", "c")


@pytest.fixture
def log(tmp_path):
    log = Log(tmp_path / "store.sqlite")
    yield log
    log.writer.stop()


@pytest.fixture
def reader(log, tmp_path):
    conn = connect(tmp_path / "store.sqlite", readonly=True)
    yield conn
    conn.close()


def test_get_run_summarises_a_closed_run(log, reader):
    log.append([event(RUN_A, "fetch", "started", ts="2026-11-28T09:00:00Z", source="cron")],
               "2026-11-28T10:00:00.000000Z")
    log.append([event(RUN_B, "other")], "2026-11-28T10:00:01.000000Z")
    last = log.append([event(RUN_A, "store", "succeeded", ts="2026-11-28T09:00:07.5Z", final=True, source="n8n")],
                      "2026-11-28T10:00:02.250000Z")[0]
    summary = get_run(reader, RUN_A)
    assert summary == RunSummary(
        trace_id=RUN_A, steps=2, status="succeeded", closed=True, source="cron",
        started_at="2026-11-28T10:00:00.000000Z", updated_at="2026-11-28T10:00:02.250000Z",
        first_ts="2026-11-28T09:00:00Z", last_ts="2026-11-28T09:00:07.5Z",
        duration_seconds=2.25, producer_duration_seconds=7.5,
        head=last.hex(), first_seq=0, last_seq=2,
    )


def test_a_failed_step_marks_the_run_failed_and_an_open_run_is_running(log, reader):
    log.append([event(RUN_A, "a", "failed"), event(RUN_A, "b", "succeeded", final=True),
                event(RUN_B, "x", "started")], "2026-11-28T10:00:00.000000Z")
    assert (get_run(reader, RUN_A).status, get_run(reader, RUN_A).closed) == ("failed", True)
    assert (get_run(reader, RUN_B).status, get_run(reader, RUN_B).closed) == ("running", False)


def test_producer_clocks_running_backwards_give_a_negative_producer_duration(log, reader):
    log.append([event(RUN_A, "a", ts="2026-11-28T09:00:10Z"), event(RUN_A, "b", ts="2026-11-28T09:00:04Z")],
               "2026-11-28T10:00:00.000000Z")
    assert get_run(reader, RUN_A).producer_duration_seconds == -6.0


def test_an_unknown_run_is_none_and_has_no_events(log, reader):
    assert get_run(reader, RUN_A) is None
    assert run_events(reader, RUN_A) == []


def test_run_events_come_in_run_order_with_attrs_and_span_ids_from_the_stored_bytes(log, reader):
    log.append([event(RUN_A, "start", "started", span_id="1" * 16, attrs={"n": 1, "tags": ["x"]})],
               "2026-11-28T10:00:00.000000Z")
    log.append([event(RUN_B, "noise")], "2026-11-28T10:00:01.000000Z")
    log.append([event(RUN_A, "done", "succeeded", final=True, span_id="2" * 16, parent_id="1" * 16,
                      attrs={"é": 1.5})], "2026-11-28T10:00:02.000000Z")
    rows = run_events(reader, RUN_A)
    assert [(r.seq, r.run_seq, r.step, r.status, r.final) for r in rows] == [
        (0, 0, "start", "started", False), (2, 1, "done", "succeeded", True)]
    assert rows[0].attrs == {"n": 1, "tags": ["x"]} and rows[1].attrs == {"é": 1.5}
    assert (rows[0].span_id, rows[0].parent_id) == ("1" * 16, None)
    assert (rows[1].span_id, rows[1].parent_id) == ("2" * 16, "1" * 16)
    assert rows[1].received_at == "2026-11-28T10:00:02.000000Z" and rows[1].ts == "2026-11-28T09:00:00Z"
    for row in rows:
        data, digest = get_entry(reader, row.seq)
        assert row.hash == digest.hex() == sha256(data).hex()
        assert decode_entry(data).step == row.step


def test_an_edited_index_column_does_not_change_what_readers_see(log, reader, tmp_path):
    import sqlite3

    log.append([event(RUN_A, "deploy", "failed")], "2026-11-28T10:00:00.000000Z")
    tamper = sqlite3.connect(tmp_path / "store.sqlite")
    tamper.execute("DROP TRIGGER entries_no_update")
    tamper.execute("UPDATE entries SET step = 'harmless', status = 'succeeded' WHERE seq = 0")
    tamper.commit()
    row = run_events(reader, RUN_A)[0]
    assert (row.step, row.status) == ("deploy", "failed")


def test_run_events_page_by_run_seq(log, reader):
    for number in range(7):
        log.append([event(RUN_A, f"step {number}"), event(RUN_B, "noise")], f"2026-11-28T10:00:0{number}.000000Z")
    pages, after = [], -1
    while page := run_events(reader, RUN_A, after_run_seq=after, limit=3):
        pages.append([row.step for row in page])
        after = page[-1].run_seq
    assert pages == [["step 0", "step 1", "step 2"], ["step 3", "step 4", "step 5"], ["step 6"]]


def test_get_entry_returns_the_stored_bytes_and_hash(log, reader):
    digest = log.append([event(RUN_A, "a")], "2026-11-28T10:00:00.000000Z")[0]
    data, stored = get_entry(reader, 0)
    assert stored == digest == sha256(data) and decode_entry(data).trace_id == RUN_A
    assert get_entry(reader, 1) is None


@pytest.fixture
def many(log, reader):
    """Ten runs: run i starts at second i; even ones succeed, every third fails, sources alternate."""
    for i in range(10):
        events = [event(trace(i), "start", "started", source="even" if i % 2 == 0 else "odd")]
        if i % 3 == 0:
            events.append(event(trace(i), "boom", "failed"))
        elif i % 2 == 0:
            events.append(event(trace(i), "done", "succeeded", final=True))
        log.append(events, f"2026-11-28T10:00:{i:02d}.500000Z")
    return reader


def test_list_runs_is_most_recent_first(many):
    page = list_runs(many)
    assert [run.trace_id for run in page.runs] == [trace(i) for i in reversed(range(10))]
    assert page.next_cursor is None


def test_keyset_pages_cover_every_run_once_while_the_log_grows(log, many):
    seen, cursor = [], None
    while True:
        page = list_runs(many, limit=3, cursor=cursor)
        seen += [run.trace_id for run in page.runs]
        log.append([event(trace(100 + len(seen)), "new")], "2026-11-28T11:00:00.000000Z")
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [trace(i) for i in reversed(range(10))]


@pytest.mark.parametrize("status, expected", [
    ("failed", [9, 6, 3, 0]), ("succeeded", [8, 4, 2]), ("running", [7, 5, 1])])
def test_filter_by_status(many, status, expected):
    assert [run.trace_id for run in list_runs(many, status=status).runs] == [trace(i) for i in expected]
    page = list_runs(many, status=status, limit=2)
    rest = list_runs(many, status=status, limit=2, cursor=page.next_cursor)
    assert [run.trace_id for run in page.runs + rest.runs] == [trace(i) for i in expected[:4]]


def test_filter_by_source_and_status_together(many):
    assert [r.trace_id for r in list_runs(many, source="odd").runs] == [trace(i) for i in (9, 7, 5, 3, 1)]
    assert [r.trace_id for r in list_runs(many, source="odd", status="failed").runs] == [trace(9), trace(3)]
    assert list_runs(many, source="nobody").runs == ()


@pytest.mark.parametrize("since, until, expected", [
    ("2026-11-28T10:00:03.5Z", None, [9, 8, 7, 6, 5, 4, 3]),
    ("2026-11-28T10:00:03.500000001Z", None, [9, 8, 7, 6, 5, 4]),
    ("2026-11-28T10:00:04Z", "2026-11-28T10:00:06.5Z", [5, 4]),
    (None, "2026-11-28T10:00:02.5000001Z", [2, 1, 0]),
    ("2026-11-28T11:00:03.5+01:00", "2026-11-28t10:00:05.5z", [4, 3]),
    ("2026-11-28T10:00:10Z", None, []),
    (None, "2026-11-28T10:00:00Z", []),
])
def test_time_range_on_started_at_with_any_precision_or_offset(many, since, until, expected):
    page = list_runs(many, since=since, until=until)
    assert [run.trace_id for run in page.runs] == [trace(i) for i in expected]


def test_time_range_pages_with_a_cursor_and_combines_with_status(many):
    page = list_runs(many, since="2026-11-28T10:00:02Z", until="2026-11-28T10:00:09Z", limit=2)
    assert [r.trace_id for r in page.runs] == [trace(8), trace(7)]
    page = list_runs(many, since="2026-11-28T10:00:02Z", until="2026-11-28T10:00:09Z", limit=2,
                     cursor=page.next_cursor)
    assert [r.trace_id for r in page.runs] == [trace(6), trace(5)]
    failed = list_runs(many, status="failed", since="2026-11-28T10:00:02Z", until="2026-11-28T10:00:09Z")
    assert [r.trace_id for r in failed.runs] == [trace(6), trace(3)]


def test_a_time_range_on_an_empty_store_is_empty(reader):
    assert list_runs(reader, since="2026-11-28T10:00:00Z") == list_runs(reader)
    assert list_runs(reader).runs == ()


def test_find_runs_by_prefix_in_either_case_most_recent_first(log, reader):
    ids = ["deadbeef" + "0" * 23 + "1", "deadbeef" + "f" * 23 + "2", "deadbeee" + "0" * 24]
    for number, trace_id in enumerate(ids):
        log.append([event(trace_id, "s")], f"2026-11-28T10:00:0{number}.000000Z")
    assert [r.trace_id for r in find_runs_by_prefix(reader, "DEADBEEF")] == ids[1::-1]
    assert [r.trace_id for r in find_runs_by_prefix(reader, "deadbeef", limit=1)] == [ids[1]]
    assert [r.trace_id for r in find_runs_by_prefix(reader, ids[2])] == [ids[2]]
    assert find_runs_by_prefix(reader, "deadbeed") == []


@pytest.mark.parametrize("call, field", [
    (lambda c: list_runs(c, status="done"), "status"),
    (lambda c: list_runs(c, source="has space"), "source"),
    (lambda c: list_runs(c, source=""), "source"),
    (lambda c: list_runs(c, limit=0), "limit"),
    (lambda c: list_runs(c, limit=501), "limit"),
    (lambda c: list_runs(c, limit="10"), "limit"),
    (lambda c: list_runs(c, since="yesterday"), "since"),
    (lambda c: list_runs(c, since="2026-11-28T10:00:00"), "since"),
    (lambda c: list_runs(c, until=12), "until"),
    (lambda c: list_runs(c, since="2026-11-28T10:00:00Z", until="2026-11-28T10:00:00Z"), "until"),
    (lambda c: list_runs(c, cursor="bm9wZQ"), "cursor"),
    (lambda c: list_runs(c, cursor=encode_cursor(5) + "="), "cursor"),
    (lambda c: list_runs(c, cursor="!!"), "cursor"),
    (lambda c: get_run(c, RUN_A.upper()), "trace_id"),
    (lambda c: get_run(c, "a" * 31), "trace_id"),
    (lambda c: run_events(c, "xyz"), "trace_id"),
    (lambda c: run_events(c, RUN_A, after_run_seq=-2), "after_run_seq"),
    (lambda c: run_events(c, RUN_A, limit=1001), "limit"),
    (lambda c: find_runs_by_prefix(c, "deadbee"), "prefix"),
    (lambda c: find_runs_by_prefix(c, "deadbeefg"), "prefix"),
    (lambda c: find_runs_by_prefix(c, "deadbeef", limit=101), "limit"),
    (lambda c: get_entry(c, -1), "seq"),
    (lambda c: get_entry(c, True), "seq"),
])
def test_invalid_arguments_name_the_field(reader, call, field):
    with pytest.raises(InvalidInput) as caught:
        call(reader)
    assert caught.value.field == field


@pytest.mark.parametrize("call, index", [
    (lambda c: get_run(c, RUN_A), "USING INDEX runs_by_trace"),
    (lambda c: run_events(c, RUN_A, after_run_seq=3), "SEARCH re USING PRIMARY KEY (run=? AND run_seq>?)"),
    (lambda c: list_runs(c), "SCAN runs"),  # the table in first_seq (rowid) order, backwards
    (lambda c: list_runs(c, source="odd"), "USING INDEX runs_by_source"),
    (lambda c: list_runs(c, since="2026-11-28T10:00:02Z", until="2026-11-28T10:00:05Z"),
     "USING INTEGER PRIMARY KEY (rowid>? AND rowid<?)"),
    (lambda c: list_runs(c, status="failed", cursor=encode_cursor(9)),
     "USING INDEX runs_by_status (status=? AND rowid<?)"),
    (lambda c: list_runs(c, source="odd", cursor=encode_cursor(9)),
     "USING INDEX runs_by_source (source=? AND rowid<?)"),
    (lambda c: find_runs_by_prefix(c, "deadbeef"), "USING INDEX runs_by_trace"),
    (lambda c: get_entry(c, 3), "USING INTEGER PRIMARY KEY"),
])
def test_every_query_reads_through_an_index(many, call, index):
    statements = []
    many.set_trace_callback(statements.append)
    call(many)
    many.set_trace_callback(None)
    plans = [[row[3] for row in many.execute("EXPLAIN QUERY PLAN " + sql)] for sql in statements]
    assert any(index in step for plan in plans for step in plan), plans
    for plan in plans:
        for step in plan:
            # A SCAN is acceptable only along an index, or the runs table, in the wanted order (stopped
            # by LIMIT): ORDER BY first_seq DESC reads them backwards, with no sort.
            assert not step.startswith("SCAN") or "USING" in step and "INDEX" in step or step == "SCAN runs", plans
            assert "TEMP B-TREE" not in step or "trace_id>?" in " ".join(plan), plans
