"""The sequencer turns events into chained entries; what it produces must pass both chain
verifiers and the Merkle reference, and a bad batch must leave no trace."""

import pytest

from appliance.core.chain import RunChains, verify_global_chain, verify_run_chain
from appliance.core.compact import CompactRange
from appliance.core.entry import decode_entry
from appliance.core.errors import EntryError, InvalidInput
from appliance.core.sequencer import Event, RunClosedError, RunHead, Sequencer
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
