"""The sequencer turns events into chained entries; what it produces must pass both chain
verifiers and the Merkle reference, and a bad batch must leave no trace."""

import json
from binascii import hexlify

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.chain import RunChains, verify_global_chain, verify_run_chain
from appliance.core.compact import CompactRange
from appliance.core.entry import EntryParts, decode_entry, encode_entry, join_parts, join_templates
from appliance.core.errors import EntryError, InvalidInput
from appliance.core.sequencer import Event, RunClosedError, RunHead, Sequencer
from appliance.core.hashing import leaf_hash, sha256
from appliance.core.tree import root_from_leaf_hashes

TRACES = ["4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c", "5759e988bd862e3fe1be46a994272793"]
RECEIVED = "2026-11-28T08:00:00.000000Z"


def event(trace: str, step: str, status: str = "info", **extra) -> Event:
    return Event(trace_id=trace, step=step, status=status, ts="2026-11-28T07:59:59Z", source="ci", **extra)


class MemoryRuns:
    """Run heads kept the way a store would: written only when a batch commits."""

    def __init__(self) -> None:
        self.heads: dict[str, RunHead] = {}

    def __call__(self, trace_id: str) -> RunHead | None:
        return self.heads.get(trace_id)


def build(n: int) -> tuple[Sequencer, MemoryRuns, list]:
    runs = MemoryRuns()
    sequencer = Sequencer(runs)
    appended = []
    for i in range(n):
        items, touched = sequencer.extend([event(TRACES[i % 3], f"step-{i}")], RECEIVED)
        runs.heads.update(touched)
        appended += items
    return sequencer, runs, appended


def test_entries_chain_globally_and_per_run_and_match_the_reference_root():
    sequencer, _, appended = build(30)
    head = verify_global_chain([(a.data, a.entry_hash) for a in appended], runs=(chains := RunChains()))
    assert head.size == 30 and head.head_hash == sequencer.head_hash
    assert {state.count for state in chains.states()} == {10}
    for trace in TRACES:
        state = verify_run_chain([a.data for a in appended if a.entry.trace_id == trace])
        assert state.count == 10 and not state.closed
    assert sequencer.root() == root_from_leaf_hashes([a.leaf_hash for a in appended])
    assert [decode_entry(a.data) for a in appended] == [a.entry for a in appended]


def test_a_bad_event_in_a_batch_changes_nothing():
    sequencer, runs, _ = build(5)
    size, head, root = sequencer.size, sequencer.head_hash, sequencer.root()
    with pytest.raises(EntryError) as caught:
        sequencer.extend([event(TRACES[0], "ok"), event(TRACES[0], "bad", status="exploded")], RECEIVED)
    assert caught.value.field == "status" and caught.value.index == 1
    assert (sequencer.size, sequencer.head_hash, sequencer.root()) == (size, head, root)
    items, _ = sequencer.extend([event(TRACES[0], "next")], RECEIVED)
    assert items[0].entry.seq == 5 and items[0].entry.prev == head


def test_a_final_entry_closes_the_run_even_within_one_batch():
    sequencer, runs, _ = build(0)
    with pytest.raises(RunClosedError):
        sequencer.extend([event(TRACES[0], "done", "succeeded", final=True), event(TRACES[0], "late")], RECEIVED)
    assert sequencer.size == 0
    items, touched = sequencer.extend([event(TRACES[0], "done", "succeeded", final=True)], RECEIVED)
    runs.heads.update(touched)
    assert touched[TRACES[0]].closed and items[0].entry.final
    with pytest.raises(RunClosedError, match="closed by its final entry at seq 0"):
        sequencer.extend([event(TRACES[0], "late")], RECEIVED)


def test_restoring_from_a_saved_frontier_continues_the_same_log():
    original, runs, appended = build(13)
    restored = Sequencer(runs, frontier=CompactRange.from_peaks(13, original.frontier.peaks),
                         head_hash=appended[-1].entry_hash)
    a, _ = original.extend([event(TRACES[1], "x")], RECEIVED)
    b, _ = restored.extend([event(TRACES[1], "x")], RECEIVED)
    assert a[0].data == b[0].data and original.root() == restored.root()


def test_head_hash_must_match_emptiness():
    with pytest.raises(InvalidInput):
        Sequencer(MemoryRuns(), head_hash=b"\x00" * 32)


# The sequencer joins an event's parts with the fields the log assigns through `join_templates`
# (bytes %-templates for the group's received_at), not `join_parts`: the entries it makes must be
# byte for byte what `encode_entry` makes of the same values, from any log size and run state.
_hex = lambda n: st.text("0123456789abcdef", min_size=n, max_size=n).filter(lambda s: s != "0" * n)  # noqa: E731
_utc = st.from_regex(r"20[0-9]{2}-0[1-9]-1[0-9]T[01][0-9]:[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?Z", fullmatch=True)
_hash = st.binary(min_size=32, max_size=32)
_attrs = st.dictionaries(st.text(max_size=4), st.none() | st.booleans() | st.integers(-2**53 + 1, 2**53 - 1)
                         | st.text(max_size=8) | st.floats(-1e15, 1e15), max_size=3)


@st.composite
def _events(draw: st.DrawFn, traces: list[str]) -> Event:
    status = draw(st.sampled_from(["started", "succeeded", "failed", "skipped", "info"]))
    step = draw(st.text(st.characters(blacklist_categories=["Cc", "Cs"]), min_size=1, max_size=12))
    event = Event(trace_id=draw(st.sampled_from(traces)), step=step, status=status, ts=draw(_utc),
                  source=draw(st.sampled_from(["ci", "a-b_c"])), attrs=draw(_attrs), span_id=draw(st.none() | _hex(16)),
                  parent_id=draw(st.none() | _hex(16)), final=status in ("succeeded", "failed") and draw(st.booleans()))
    return event.prepared() if draw(st.booleans()) else event


@st.composite
def _logs(draw: st.DrawFn) -> tuple[Sequencer, list[Event], str]:
    traces = draw(st.lists(_hex(32), min_size=1, max_size=4, unique=True))
    known = {trace: RunHead(draw(st.integers(1, 2**53 - 2)), draw(_hash), 0, False, draw(st.integers(0, 2**40)))
             for trace in traces if draw(st.booleans())}
    size = draw(st.sampled_from([0, 1, 255, 256]) | st.integers(0, 2**53 - 100))
    if size == 0:
        sequencer = Sequencer(known.get)
    else:
        peaks = [draw(_hash) for _ in range(size.bit_count())]
        sequencer = Sequencer(known.get, frontier=CompactRange.from_peaks(size, peaks), head_hash=draw(_hash))
    return sequencer, draw(st.lists(_events(traces), min_size=1, max_size=8)), draw(_utc)


@given(_logs())
@settings(max_examples=150, deadline=None)
def test_sequenced_entries_are_the_bytes_encode_entry_makes(log: tuple[Sequencer, list[Event], str]) -> None:
    sequencer, events, received_at = log
    head = sequencer.head_hash
    try:
        appended, _ = sequencer.extend(events, received_at)
    except EntryError:  # a run closed earlier in the batch, or a float that does not survive its text
        return
    for item in appended:
        assert item.data == encode_entry(item.entry) == rfc8785.dumps(json.loads(item.data))
        assert item.prev == head and item.entry_hash == sha256(item.data) and item.leaf_hash == leaf_hash(item.data)
        head = item.entry_hash
    assert sequencer.head_hash == head


@given(st.binary(max_size=40), st.binary(max_size=40), st.integers(1, 2**53 - 1), st.integers(0, 2**53 - 1), _utc,
       _hash, st.none() | _hash)
def test_join_templates_equal_join_parts(head: bytes, tail: bytes, seq: int, run_seq: int, received_at: str,
                                         prev: bytes, run_prev: bytes | None) -> None:
    linked, run_start = join_templates(received_at)
    parts = EntryParts(head, tail)
    run_seq = run_seq if run_prev is not None else 0
    expected = join_parts(parts, seq=seq, run_seq=run_seq, received_at=received_at, prev=prev, run_prev=run_prev)
    if run_prev is None:
        assert run_start % (head, hexlify(prev), seq, tail) == expected
    else:
        assert linked % (head, hexlify(prev), hexlify(run_prev), run_seq, seq, tail) == expected


@pytest.mark.parametrize("bad", ["", "2026-11-28 08:00:00Z", "2026-02-30T08:00:00Z", None])
def test_a_bad_received_at_is_refused_even_after_a_good_one_and_leaves_no_trace(bad):
    # The sequencer checks a group's received_at once and keeps its templates: a different value,
    # the empty string included, is checked again.
    sequencer, runs, _ = build(3)
    size, head = sequencer.size, sequencer.head_hash
    with pytest.raises(EntryError) as refused:
        sequencer.extend([event(TRACES[0], "late")], bad)
    assert refused.value.field == "received_at"
    assert (sequencer.size, sequencer.head_hash) == (size, head)
    items, _ = sequencer.extend([event(TRACES[0], "next")], RECEIVED)
    assert items[0].seq == size and json.loads(items[0].data)["received_at"] == RECEIVED


def test_no_entry_is_sequenced_past_the_last_safe_integer():
    # Found by test_sequenced_entries_are_the_bytes_encode_entry_makes: a run at 2^53 - 1 entries
    # got run_seq 2^53, which canonical JSON cannot carry. Such a request is refused whole.
    full = RunHead(2**53, b"\x11" * 32, 5, False, 0)
    sequencer = Sequencer({TRACES[0]: full}.get, frontier=CompactRange.from_peaks(6, [b"\x22" * 32] * 2),
                          head_hash=b"\x33" * 32)
    with pytest.raises(EntryError) as refused:
        sequencer.extend([event(TRACES[1], "fine"), event(TRACES[0], "one too many")], RECEIVED)
    assert refused.value.field == "run_seq" and refused.value.index == 1 and sequencer.size == 6
    last = Sequencer(lambda _: None, frontier=CompactRange.from_peaks(2**53, [b"\x22" * 32]), head_hash=b"\x33" * 32)
    with pytest.raises(EntryError) as refused:
        last.extend([event(TRACES[1], "beyond")], RECEIVED)
    assert refused.value.field == "seq"
    at_the_end = Sequencer(lambda _: None, frontier=CompactRange.from_peaks(2**53 - 1, [b"\x22" * 32] * 53),
                           head_hash=b"\x33" * 32)
    assert at_the_end.extend([event(TRACES[1], "last")], RECEIVED)[0][0].seq == 2**53 - 1
