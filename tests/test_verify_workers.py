"""The offline verifier's worker processes (appliance.verify): a bundle whose entries are checked in
slices by forked workers gets the same verdict, and for every tamper the same first error, as one
process checking them in order."""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance import verify
from tests.export_helpers import Store, dump, trace

ROOT = Path(__file__).resolve().parents[1]
RUN = trace(5)
STEPS = 40


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[dict, str]:
    """The run's bundle and the log key; the store (and its writer thread: forking is for a process
    without other threads) closed before the tests run."""
    s = Store(tmp_path_factory.mktemp("workers"))
    try:
        s.run(RUN, STEPS, closed=True, batch=7, noise=2)
        s.checkpoint()
        return s.bundle(RUN), s.log_key
    finally:
        s.close()


@pytest.fixture(autouse=True)
def small_slices(monkeypatch):
    monkeypatch.setattr(verify, "ENTRIES_PER_WORKER", 1)


# Run in a fresh interpreter: forking is only for a process without other threads, and a test run
# may have some (a store's writer, a server) left by earlier tests.
_COMPARE = """
import json, os, sys
from appliance import verify
from appliance.core.bundle_verify import verify_bundle
from appliance.core.keys import NoteVerifier

verify.ENTRIES_PER_WORKER = 1
if sys.argv[2] == "die":
    verify._serve = lambda connection, others, data: os._exit(3)  # the forked worker runs this
if sys.argv[2] == "idle":  # workers never sent a slice (say, the file is not a bundle) end when closed
    for count in (2, 4):
        pool = verify._Workers(count, b"not a bundle")
        assert len(pool._workers) == count - 1
        pool.close()
        assert not any(process.is_alive() for process, _ in pool._workers)
    sys.exit(0)
key = NoteVerifier.from_text(sys.argv[1])

def outcome(path, workers):
    data = open(path, "rb").read()
    pool = verify._Workers(workers, data)
    try:
        assert workers == 1 or pool._workers, "no worker forked"
        return verify_bundle(data, key=key, split=pool.split).to_json()
    except AssertionError:
        raise
    except Exception as error:
        return [type(error).__name__, str(error)]
    finally:
        pool.close()

for path in sys.argv[3:]:
    print(json.dumps([outcome(path, 1), outcome(path, 3)]))
"""


def _outcomes(forged: dict[str, dict], names, key_text: str, tmp_path: Path, mode: str = "") -> dict[str, list]:
    """For each named bundle: [its outcome in one process, with 3 processes] (report or [class, message])."""
    paths = []
    for name in names:
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_bytes(dump(forged[name]))
    done = subprocess.run([sys.executable, "-c", _COMPARE, key_text, mode or "-", *map(str, paths)],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    return dict(zip(names, map(json.loads, done.stdout.splitlines())))


def _flip_hash_line(proof: str, line: int) -> str:
    lines = proof.split("\n")
    raw = bytearray(base64.b64decode(lines[line]))
    raw[5] ^= 1
    lines[line] = base64.b64encode(bytes(raw)).decode()
    return "\n".join(lines)


def _forgeries(bundle: dict) -> dict[str, dict]:
    """Tampers named after the attack, at the start, the middle and the end of the run, alone and
    two at once (the earlier one must be the one reported)."""
    forged: dict[str, dict] = {"untouched": bundle}

    def make(name: str, change) -> None:
        copied = copy.deepcopy(bundle)
        change(copied["entries"])
        forged[name] = copied

    for k in (0, 13, 20, 39):
        make(f"entry-byte-flipped-{k}", lambda e, k=k: e[k].update(entry=e[k]["entry"].replace("step ", "stap ", 1)))
        make(f"entry-not-canonical-{k}", lambda e, k=k: e[k].update(entry=e[k]["entry"].replace(":", ": ", 1)))
        make(f"proof-lowest-hash-changed-{k}", lambda e, k=k: e[k].update(proof=_flip_hash_line(e[k]["proof"], 2)))
        make(f"proof-upper-hash-changed-{k}", lambda e, k=k: e[k].update(proof=_flip_hash_line(e[k]["proof"], 5)))
        make(f"proof-member-missing-{k}", lambda e, k=k: e[k].pop("proof"))
        make(f"entry-not-a-string-{k}", lambda e, k=k: e[k].update(entry=7))
        make(f"entry-removed-{k}", lambda e, k=k: e.pop(k))
        make(f"entry-duplicated-{k}", lambda e, k=k: e.insert(k, e[k]))
        if k < 39:
            make(f"entries-swapped-{k}", lambda e, k=k: e.__setitem__(slice(k, k + 2), [e[k + 1], e[k]]))
    make("removed-5-and-flipped-30", lambda e: (e[30].update(entry=e[30]["entry"].replace("step ", "stap ", 1)),
                                                e.pop(5)))
    make("flipped-30-and-proof-missing-31", lambda e: (e[30].update(entry=e[30]["entry"].replace("step", "stap", 1)),
                                                       e[31].pop("proof")))
    make("proof-missing-10-and-removed-25", lambda e: (e.pop(25), e[10].pop("proof")))
    return forged


def test_workers_give_the_same_verdict_and_first_error_as_one_process(exported, tmp_path):
    forged = _forgeries(exported[0])
    for name, (alone, split) in _outcomes(forged, list(forged), exported[1], tmp_path).items():
        assert split == alone, name
        if name == "untouched":
            assert alone["entries"] == STEPS
        else:
            assert isinstance(alone, list) and alone[0] in {"BundleError", "BundleFormatError"}, name


def test_a_worker_that_dies_leaves_its_slice_to_this_process(exported, tmp_path):
    forged = _forgeries(exported[0])
    names = ["untouched", "entry-byte-flipped-39", "entries-swapped-20"]
    for name, (alone, split) in _outcomes(forged, names, exported[1], tmp_path, "die").items():
        assert split == alone, name


def test_workers_never_sent_a_slice_end_when_closed():
    done = subprocess.run([sys.executable, "-c", _COMPARE, "-", "idle"], capture_output=True, text=True, cwd=ROOT,
                          timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_garbage_file_with_workers_is_a_clean_error(exported, tmp_path):
    path = tmp_path / "garbage.json"
    path.write_bytes(b'{"format": "runlog-evidence/v1", "entries": "' + b"x" * 20_000_000 + b'"}')
    done = subprocess.run([sys.executable, "-m", "appliance.verify", str(path), "--key", exported[1], "--workers", "4"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 2 and done.stdout.startswith("ERROR:") and "Traceback" not in done.stderr


def test_the_cli_with_workers_prints_what_one_process_prints(exported, tmp_path):
    forged = _forgeries(exported[0])
    script = ("import sys; from appliance import verify; verify.ENTRIES_PER_WORKER = 1; "
              "sys.exit(verify.main(sys.argv[1:]))")
    for name in ("untouched", "entry-duplicated-20", "proof-upper-hash-changed-39"):
        path = tmp_path / f"{name}.json"
        path.write_bytes(dump(forged[name]))
        done = [subprocess.run([sys.executable, "-c", script, str(path), "--key", exported[1], "--workers", workers],
                               capture_output=True, text=True, cwd=ROOT, timeout=60) for workers in ("1", "2")]
        assert (done[0].returncode, done[0].stdout) == (done[1].returncode, done[1].stdout), name
        assert done[0].returncode == (0 if name == "untouched" else 1) and "Traceback" not in done[1].stderr


def test_workers_option_must_be_positive(capsys):
    with pytest.raises(SystemExit):
        verify.main(["bundle.json", "--key", "k", "--workers", "0"])
    assert "--workers" in capsys.readouterr().err


def test_worker_count_follows_the_file_size():
    assert verify._worker_count(None, 10) == 1
    assert verify._worker_count(3, 10) == 3
    assert 1 <= verify._worker_count(None, 1 << 40) <= verify.MAX_WORKERS
