import dataclasses
import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.core.chain import (
    REASONS,
    ChainHead,
    RunChainError,
    RunChains,
    RunState,
    verify_global_chain,
    verify_run_chain,
)
from appliance.core.entry import Entry, decode_entry, encode_entry, entry_hash
from appliance.core.errors import ChainError, InvalidInput, RunlogError
from appliance.core.timefmt import format_utc

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "chain"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)


def make_log(size: int = 200, parallel_runs: int = 4, seed: int = 1) -> list[bytes]:
    """A valid log: `parallel_runs` runs interleaved at random; runs close and new ones start."""
    rng = random.Random(seed)
    open_runs: dict[str, tuple[int, bytes | None]] = {}
    started = 0
    log: list[bytes] = []
    prev = None
    for seq in range(size):
        while len(open_runs) < parallel_runs:
            started += 1
            open_runs[f"{started:032x}"] = (0, None)
        trace_id = rng.choice(sorted(open_runs))
        run_seq, run_prev = open_runs[trace_id]
        closing = run_seq >= 3 and rng.random() < 0.2
        status = "succeeded" if closing else ("started" if run_seq == 0 else rng.choice(["info", "skipped", "failed"]))
        moment = format_utc(T0 + timedelta(seconds=seq))
        data = encode_entry(
            Entry(seq=seq, trace_id=trace_id, run_seq=run_seq, step=f"step {run_seq}", status=status, final=closing,
                  ts=moment, received_at=moment, source="tester", attrs={"n": seq}, prev=prev, run_prev=run_prev)
        )
        log.append(data)
        prev = entry_hash(data)
        if closing:
            del open_runs[trace_id]
        else:
            open_runs[trace_id] = (run_seq + 1, prev)
    return log


LOG = make_log()
ENTRIES = [decode_entry(data) for data in LOG]
HEAD = ChainHead(len(LOG), entry_hash(LOG[-1]))


def recorded(log: list[bytes]) -> list[tuple[bytes, bytes]]:
    return [(data, entry_hash(data)) for data in log]


def forge(data: bytes, **changes: Any) -> bytes:
    return encode_entry(dataclasses.replace(decode_entry(data), **changes))


def rechain(log: list[bytes]) -> list[bytes]:
    """What an attacker who rewrites the global chain (but not the run chains) would store."""
    out: list[bytes] = []
    for seq, data in enumerate(log):
        out.append(forge(data, seq=seq, prev=entry_hash(out[-1]) if out else None))
    return out


def run_of(trace_id: str, log: list[bytes] = LOG) -> list[bytes]:
    return [data for data in log if decode_entry(data).trace_id == trace_id]


def closed_runs() -> list[str]:
    return [e.trace_id for e in ENTRIES if e.final]


def chain_error(call: Any, *args: Any, **kwargs: Any) -> ChainError:
    with pytest.raises(ChainError) as caught:
        call(*args, **kwargs)
    assert caught.value.reason in REASONS
    return caught.value


# ---- the global chain -----------------------------------------------------------------------


def test_a_good_log_verifies_to_its_head() -> None:
    assert verify_global_chain(LOG) == HEAD
    assert verify_global_chain(recorded(LOG), expected_head=HEAD) == HEAD
    assert verify_global_chain(iter(LOG)) == HEAD  # a one-shot stream is enough


def test_an_empty_log_is_the_empty_head() -> None:
    assert verify_global_chain([]) == ChainHead(0, None)
    assert verify_global_chain([], expected_head=ChainHead(0, None)) == ChainHead(0, None)


def test_verification_can_resume_from_a_known_head() -> None:
    start = ChainHead(120, entry_hash(LOG[119]))
    assert verify_global_chain(LOG[120:], start=start, expected_head=HEAD) == HEAD
    assert verify_global_chain([], start=start) == start


def test_expected_head_may_be_passed_on_the_way() -> None:
    assert verify_global_chain(LOG, expected_head=ChainHead(50, entry_hash(LOG[49]))) == HEAD


def test_edited_byte_is_caught_at_its_seq() -> None:
    at = 83
    tampered = list(LOG)
    tampered[at] = LOG[at].replace(b'"step":"step', b'"step":"stop')
    # against the hashes the store recorded
    error = chain_error(verify_global_chain, [(data, entry_hash(LOG[i])) for i, data in enumerate(tampered)])
    assert (error.seq, error.reason) == (at, "edited")
    # from the bytes alone: the next entry's prev no longer matches
    error = chain_error(verify_global_chain, tampered)
    assert (error.seq, error.reason) == (at, "edited")
    assert f"seq {at + 1}" in str(error)


def test_edit_that_breaks_the_format_is_malformed() -> None:
    tampered = list(LOG)
    tampered[40] = LOG[40].replace(b'"v":1', b'"v":2')
    error = chain_error(verify_global_chain, tampered)
    assert (error.seq, error.reason) == (40, "malformed")
    tampered[40] = LOG[40][:-1]
    assert chain_error(verify_global_chain, tampered).seq == 40


def test_edited_prev_is_reported_at_the_entry_it_no_longer_matches() -> None:
    tampered = list(LOG)
    tampered[10] = forge(LOG[10], prev=bytes(32))
    error = chain_error(verify_global_chain, tampered)
    assert (error.seq, error.reason) == (9, "edited")


def test_deleted_entry_is_missing() -> None:
    for at in (0, 1, 77, len(LOG) - 2):
        error = chain_error(verify_global_chain, LOG[:at] + LOG[at + 1:])
        assert (error.seq, error.reason) == (at, "missing")


def test_deleted_last_entry_is_truncated_against_a_known_head() -> None:
    assert verify_global_chain(LOG[:-1]) == ChainHead(199, entry_hash(LOG[198]))  # undetectable alone
    error = chain_error(verify_global_chain, LOG[:-1], expected_head=HEAD)
    assert (error.seq, error.reason) == (199, "truncated")


def test_truncated_log_against_a_known_head() -> None:
    error = chain_error(verify_global_chain, LOG[:150], expected_head=HEAD)
    assert (error.seq, error.reason) == (150, "truncated")
    error = chain_error(verify_global_chain, [], expected_head=HEAD)
    assert (error.seq, error.reason) == (0, "truncated")


def test_inserted_forgery_with_a_valid_prev_is_inserted() -> None:
    at = 60
    fake = forge(LOG[at], step="approve payment")  # seq 60, prev = hash of entry 59: links fine
    error = chain_error(verify_global_chain, LOG[:at] + [fake] + LOG[at:])
    assert (error.seq, error.reason) == (at, "inserted")


def test_duplicated_entry_is_inserted() -> None:
    at = 100
    error = chain_error(verify_global_chain, LOG[: at + 1] + [LOG[at]] + LOG[at + 1:])
    assert (error.seq, error.reason) == (at, "inserted")
    error = chain_error(verify_global_chain, LOG + [LOG[5]])
    assert (error.seq, error.reason) == (5, "inserted")


def test_swapped_neighbours_are_reordered_not_missing() -> None:
    for at in (0, 50, len(LOG) - 2):
        swapped = LOG[:at] + [LOG[at + 1], LOG[at]] + LOG[at + 2:]
        error = chain_error(verify_global_chain, swapped)
        assert (error.seq, error.reason) == (at, "reordered")


def test_replaced_head_is_forked() -> None:
    fake_head = forge(LOG[-1], step="something else")  # valid seq and prev
    assert verify_global_chain(LOG[:-1] + [fake_head]).size == HEAD.size  # undetectable alone
    error = chain_error(verify_global_chain, LOG[:-1] + [fake_head], expected_head=HEAD)
    assert (error.seq, error.reason) == (199, "forked")


def test_fork_is_reported_where_the_known_head_is_even_if_the_log_grew() -> None:
    forked_log = LOG[:120] + [forge(LOG[120], step="rewritten")]
    for data in LOG[121:]:
        forked_log.append(forge(data, prev=entry_hash(forked_log[-1])))
    assert verify_global_chain(forked_log).size == 200  # self-consistent on its own
    error = chain_error(verify_global_chain, forked_log, expected_head=ChainHead(150, entry_hash(LOG[149])))
    assert (error.seq, error.reason) == (149, "forked")


def test_start_and_expected_head_of_the_same_size_must_agree() -> None:
    start = ChainHead(10, entry_hash(LOG[9]))
    assert verify_global_chain([], start=start, expected_head=start) == start
    error = chain_error(verify_global_chain, [], start=start, expected_head=ChainHead(10, bytes(32)))
    assert (error.seq, error.reason) == (9, "forked")
    with pytest.raises(InvalidInput):
        verify_global_chain([], start=start, expected_head=ChainHead(5, entry_hash(LOG[4])))


def test_resuming_from_the_wrong_head_is_edited() -> None:
    error = chain_error(verify_global_chain, LOG[120:], start=ChainHead(120, bytes(32)))
    assert (error.seq, error.reason) == (119, "edited")
    error = chain_error(verify_global_chain, LOG[121:], start=ChainHead(120, entry_hash(LOG[119])))
    assert (error.seq, error.reason) == (120, "missing")


@pytest.mark.parametrize("item", [None, "text", 42, (LOG[0],), (LOG[0], b"x", b"y"), [LOG[0], b""]])
def test_items_that_are_not_entries_are_malformed(item: Any) -> None:
    error = chain_error(verify_global_chain, [item])
    assert (error.seq, error.reason) == (0, "malformed")


def test_recorded_hash_of_the_wrong_type_is_edited() -> None:
    error = chain_error(verify_global_chain, [(LOG[0], entry_hash(LOG[0]).hex())])
    assert (error.seq, error.reason) == (0, "edited")


@pytest.mark.parametrize(("size", "head_hash"), [(-1, None), (0, bytes(32)), (1, None), (1, b"short"), (True, None)])
def test_chain_heads_check_their_shape(size: Any, head_hash: Any) -> None:
    with pytest.raises(InvalidInput):
        ChainHead(size, head_hash)


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_every_single_tampering_is_caught_against_the_known_head(data: st.DataObject) -> None:
    log = LOG[:40]
    head = ChainHead(40, entry_hash(log[-1]))
    kind = data.draw(st.sampled_from(["delete", "duplicate", "swap", "edit", "drop-tail"]))
    at = data.draw(st.integers(0, len(log) - 2))
    tampered = list(log)
    if kind == "delete":
        del tampered[at]
    elif kind == "duplicate":
        tampered.insert(at + 1, log[at])
    elif kind == "swap":
        tampered[at], tampered[at + 1] = tampered[at + 1], tampered[at]
    elif kind == "edit":
        tampered[at] = forge(log[at], attrs={"n": -1})
    else:
        tampered = tampered[:at]
    expected = {"delete": "missing", "duplicate": "inserted", "swap": "reordered", "edit": "edited", "drop-tail": "truncated"}
    error = chain_error(verify_global_chain, tampered, expected_head=head)
    assert (error.seq, error.reason) == (at, expected[kind])


@given(st.lists(st.binary(max_size=80) | st.tuples(st.binary(max_size=40), st.binary(max_size=40)), max_size=4))
@settings(max_examples=200)
def test_garbage_streams_only_raise_the_error_family(items: list[Any]) -> None:
    for verify in (verify_global_chain, verify_run_chain):
        try:
            verify(items)
        except RunlogError:
            pass


# ---- the per-run chains ---------------------------------------------------------------------


def test_every_run_verifies_and_closed_runs_commit_to_their_step_count() -> None:
    traces = {e.trace_id for e in ENTRIES}
    for trace_id in traces:
        run = run_of(trace_id)
        state = verify_run_chain(recorded(run))
        last = decode_entry(run[-1])
        assert state == RunState(trace_id, len(run), entry_hash(run[-1]), last.final, last.seq)
    assert len(closed_runs()) >= 10


def test_all_runs_are_checked_in_one_pass_over_the_global_stream() -> None:
    runs = RunChains()
    assert verify_global_chain(LOG, runs=runs) == HEAD
    states = {state.trace_id: state for state in runs.states()}
    assert len(runs) == len(states) == len({e.trace_id for e in ENTRIES})
    for trace_id in closed_runs():
        assert states[trace_id].closed
        assert states[trace_id] == runs.state(trace_id) == verify_run_chain(run_of(trace_id))
    assert runs.state("f" * 32) is None


def test_dropped_middle_step_is_missing() -> None:
    trace_id = closed_runs()[0]
    run = run_of(trace_id)
    error = chain_error(verify_run_chain, run[:1] + run[2:])
    assert isinstance(error, RunChainError)
    assert (error.seq, error.reason, error.run_seq) == (decode_entry(run[2]).seq, "missing", 2)
    assert error.trace_id == trace_id


def test_dropped_first_step_is_missing() -> None:
    run = run_of(closed_runs()[0])
    error = chain_error(verify_run_chain, run[1:])
    assert (error.seq, error.reason) == (decode_entry(run[1]).seq, "missing")


def test_dropped_final_step_leaves_the_run_open() -> None:
    trace_id = closed_runs()[0]
    run = run_of(trace_id)
    state = verify_run_chain(run[:-1])
    assert not state.closed
    assert state.count == len(run) - 1 == decode_entry(run[-1]).run_seq


def test_entry_after_final_is_inserted() -> None:
    trace_id = closed_runs()[0]
    run = run_of(trace_id)
    last = decode_entry(run[-1])
    extra = forge(run[-1], seq=last.seq + 1000, run_seq=last.run_seq + 1, run_prev=entry_hash(run[-1]), final=False, status="info")
    error = chain_error(verify_run_chain, run + [extra])
    assert (error.seq, error.reason) == (last.seq + 1000, "inserted")
    assert "closed" in str(error)


def test_entry_after_final_in_a_rechained_log_is_caught_by_the_run_check() -> None:
    trace_id = closed_runs()[0]
    final = next(e for e in ENTRIES if e.trace_id == trace_id and e.final)
    extra = forge(LOG[final.seq], status="info", final=False, run_seq=final.run_seq + 1, run_prev=entry_hash(LOG[final.seq]))
    log = rechain(LOG[: final.seq + 1] + [extra] + LOG[final.seq + 1:])
    assert verify_global_chain(log).size == len(LOG) + 1  # the global chain alone is fooled
    error = chain_error(verify_global_chain, log, runs=RunChains())
    assert (error.seq, error.reason) == (final.seq + 1, "inserted")


def test_duplicated_step_is_inserted_and_swapped_steps_reordered() -> None:
    run = run_of(closed_runs()[0])
    error = chain_error(verify_run_chain, run[:2] + [run[1]] + run[2:])
    assert (error.seq, error.reason) == (decode_entry(run[1]).seq, "inserted")
    error = chain_error(verify_run_chain, [run[0], run[2], run[1]] + run[3:])
    assert (error.seq, error.reason) == (decode_entry(run[1]).seq, "reordered")
    error = chain_error(verify_run_chain, [run[1], run[0]] + run[2:])
    assert (error.seq, error.reason) == (decode_entry(run[0]).seq, "reordered")


def test_edited_step_is_reported_at_the_entry_its_successor_contradicts() -> None:
    run = run_of(closed_runs()[0])
    tampered = list(run)
    tampered[1] = forge(run[1], step="rewritten")
    error = chain_error(verify_run_chain, tampered)
    assert (error.seq, error.reason) == (decode_entry(run[1]).seq, "edited")
    error = chain_error(verify_run_chain, [(d, entry_hash(o)) for d, o in zip(tampered, run)])
    assert (error.seq, error.reason) == (decode_entry(run[1]).seq, "edited")


def test_entry_spliced_from_another_run_is_inserted() -> None:
    first, second = closed_runs()[:2]
    run, other = run_of(first), run_of(second)
    error = chain_error(verify_run_chain, run[:2] + [other[2]] + run[2:])
    assert (error.seq, error.reason) == (decode_entry(other[2]).seq, "inserted")
    assert second in str(error)


def test_entry_relabelled_from_another_run_breaks_run_prev() -> None:
    first, second = closed_runs()[:2]
    run, other = run_of(first), run_of(second)
    stolen = forge(other[2], trace_id=first, seq=decode_entry(run[1]).seq + 1, run_seq=2)
    error = chain_error(verify_run_chain, run[:2] + [stolen])
    assert (error.seq, error.reason) == (decode_entry(run[1]).seq, "edited")


def test_run_entries_out_of_global_order_are_reordered() -> None:
    run = run_of(closed_runs()[0])
    a, b = decode_entry(run[0]), decode_entry(run[1])
    late = forge(run[1], seq=a.seq)  # same run_seq order, but not after its predecessor
    error = chain_error(verify_run_chain, [run[0], late])
    assert (error.seq, error.reason) == (a.seq, "reordered")
    assert b.seq > a.seq


def test_unreadable_entry_in_a_run_is_malformed() -> None:
    run = run_of(closed_runs()[0])
    error = chain_error(verify_run_chain, run[:2] + [b"{}"])
    assert (error.seq, error.reason) == (decode_entry(run[1]).seq + 1, "malformed")


def test_empty_run() -> None:
    assert verify_run_chain([], trace_id="a" * 32) == RunState("a" * 32, 0, None, False, None)
    with pytest.raises(InvalidInput):
        verify_run_chain([])
    error = chain_error(verify_run_chain, run_of(closed_runs()[0]), trace_id="a" * 32)
    assert error.reason == "inserted"


# ---- published-style vectors: one threat per file --------------------------------------------

CASES = json.loads((VECTORS / "expected.json").read_text())


def _lines(name: str) -> list[bytes]:
    return (VECTORS / name).read_bytes().splitlines()


@pytest.mark.parametrize("name", sorted(CASES))
def test_chain_vector(name: str) -> None:
    case = CASES[name]
    entries = _lines(name)
    if case["check"] == "global":
        head = case.get("expected_head")
        expected_head = ChainHead(head["size"], bytes.fromhex(head["head_hash"])) if head else None
        call = lambda: verify_global_chain(entries, expected_head=expected_head, runs=RunChains())  # noqa: E731
    else:
        call = lambda: verify_run_chain(entries)  # noqa: E731
    if "reason" in case:
        error = chain_error(call)
        assert (error.seq, error.reason) == (case["seq"], case["reason"])
    else:
        result = call()
        for key, value in case["result"].items():
            got = getattr(result, key)
            assert (got.hex() if isinstance(got, bytes) else got) == value
