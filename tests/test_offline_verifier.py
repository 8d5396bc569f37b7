"""`runlog export` and `runlog verify FILE` as real subprocesses, `python -m appliance.verify` in a
fresh virtual environment holding only pynacl and rfc8785, and CSV tampers."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.core.keys import generate_signer
from tests.export_helpers import Store, trace

ROOT = Path(__file__).resolve().parents[1]
RUN = trace(5)


def runlog(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True, text=True, env=env,
                          timeout=60, cwd=ROOT)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A store with one closed run (no checkpoint yet: `runlog export` signs one) exported as JSON and CSV."""
    base = tmp_path_factory.mktemp("offline")
    store = Store(base / "data")
    store.run(RUN, 4, closed=True, noise=1)
    store.run(trace(6), 2, closed=False)
    log_key = store.log_key
    store.close()
    env = {**os.environ, "RUNLOG_DATA_DIR": str(base / "data"), "RUNLOG_KEYS_DIR": str(base / "data" / "keys"),
           "RUNLOG_ORIGIN": store.settings.origin, "PYTHONPATH": str(ROOT)}
    for name in [k for k in env if k.startswith("RUNLOG_ANCHOR")]:
        del env[name]
    json_path, csv_path = base / "run.json", base / "run.csv"
    done = runlog("export", RUN, "--format", "json", "-o", str(json_path), env=env)
    assert done.returncode == 0, done.stderr
    done = runlog("export", RUN, "--format", "csv", "-o", str(csv_path), env=env)
    assert done.returncode == 0, done.stderr
    return {"json": json_path, "csv": csv_path, "key": log_key, "env": env, "base": base}


def test_runlog_verify_file_with_key(exported):
    done = runlog("verify", str(exported["json"]), "--key", exported["key"], env=exported["env"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"these 4 events of trace {RUN}" in done.stdout and "closed and complete" in done.stdout
    assert "anchors were not consulted offline" in done.stdout


def test_runlog_verify_json_output_and_key_file(exported):
    key_file = exported["base"] / "log.pub"
    key_file.write_text(exported["key"] + "\n")
    done = runlog("verify", str(exported["json"]), "--key", str(key_file), "--json", env=exported["env"])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["ok"], report["entries"], report["run"]) == (True, 4, "closed")


def test_runlog_verify_file_takes_workers_like_python_m_appliance_verify(exported):
    answers = [runlog("verify", str(exported["json"]), "--key", exported["key"], "--workers", n, env=exported["env"])
               for n in ("1", "2")]
    assert [done.returncode for done in answers] == [0, 0] and answers[0].stdout == answers[1].stdout
    done = runlog("verify", str(exported["json"]), "--key", exported["key"], "--workers", "0", env=exported["env"])
    assert done.returncode == 2 and "--workers must be at least 1" in done.stderr


def test_verify_needs_a_trusted_key(exported):
    done = runlog("verify", str(exported["json"]), env=exported["env"])
    assert done.returncode == 2 and "--key KEY" in done.stderr
    done = runlog("verify", str(exported["json"]), "--key", exported["key"], "--db", "x", env=exported["env"])
    assert done.returncode == 2


def test_wrong_key_fails_with_exit_1(exported):
    other = generate_signer("runlog.test/export", bytes(range(32))).verifier().to_text()
    done = runlog("verify", str(exported["json"]), "--key", other, env=exported["env"])
    assert done.returncode == 1 and done.stdout.startswith("FAILED:") and "Traceback" not in done.stderr


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage", b"{\"format\": \"runlog-evidence/v1\""])
def test_garbage_files_exit_2_without_traceback(exported, tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    done = subprocess.run([sys.executable, "-m", "appliance.verify", str(path), "--key", exported["key"]],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 2 and done.stdout.startswith("ERROR:") and "Traceback" not in done.stderr


def test_truncated_file_exits_2(exported, tmp_path):
    path = tmp_path / "cut.json"
    path.write_bytes(exported["json"].read_bytes()[:1000])
    done = runlog("verify", str(path), "--key", exported["key"], env=exported["env"])
    assert done.returncode == 2 and "not a readable evidence bundle" in done.stdout


def test_csv_verifies_and_neutralises_nothing_it_need_not(exported):
    text = exported["csv"].read_bytes().decode("utf-8")
    assert text.startswith("\ufeffseq,run_seq,") and text.count("\r\n") == 5
    done = runlog("verify", str(exported["csv"]), "--key", exported["key"], env=exported["env"])
    assert done.returncode == 0, done.stdout
    assert "4 rows of trace" in done.stdout


def test_csv_cell_edited(exported, tmp_path):
    path = tmp_path / "edited.csv"
    path.write_bytes(exported["csv"].read_bytes().replace(b"step 1", b"step 9"))
    shutil.copy(str(exported["csv"]) + ".sig", str(path) + ".sig")
    done = runlog("verify", str(path), "--key", exported["key"], env=exported["env"])
    assert done.returncode == 1 and "edited" in done.stdout


def test_csv_row_dropped(exported, tmp_path):
    path = tmp_path / "dropped.csv"
    lines = exported["csv"].read_bytes().split(b"\r\n")
    path.write_bytes(b"\r\n".join(lines[:2] + lines[3:]))
    shutil.copy(str(exported["csv"]) + ".sig", str(path) + ".sig")
    done = runlog("verify", str(path), "--key", exported["key"], env=exported["env"])
    assert done.returncode == 1 and "SHA-256 differs" in done.stdout


def test_csv_without_signature_exits_2(exported, tmp_path):
    path = tmp_path / "alone.csv"
    shutil.copy(exported["csv"], path)
    done = runlog("verify", str(path), "--key", exported["key"], env=exported["env"])
    assert done.returncode == 2 and ".sig" in done.stdout


def test_verifier_runs_in_a_fresh_venv_with_only_pynacl_and_rfc8785(exported, tmp_path):
    """A new venv, `pip install pynacl rfc8785` (from the local wheel cache: no network here), and a
    copy of appliance/core plus appliance/verify.py only: nothing else of runlog is importable."""
    started = time.monotonic()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    pip = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--find-links", str(_wheels(tmp_path)),
                          "pynacl", "rfc8785"], capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    site = tmp_path / "code" / "appliance"
    shutil.copytree(ROOT / "appliance" / "core", site / "core")
    shutil.copy(ROOT / "appliance" / "__init__.py", site / "__init__.py")
    shutil.copy(ROOT / "appliance" / "verify.py", site / "verify.py")
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(tmp_path / "code")}
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True,
                            env=env, timeout=60).stdout.lower()
    assert "litestar" not in listed and "httpx" not in listed and "pynacl" in listed
    done = subprocess.run([str(python), "-m", "appliance.verify", str(exported["json"]), "--key", exported["key"]],
                          capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK: the evidence holds." in done.stdout
    assert time.monotonic() - started < 60


def _wheels(tmp_path: Path) -> Path:
    """Wheels of pynacl, rfc8785 and their dependencies, built from this interpreter's installed copies
    by pip's own cache when present, else downloaded into the cache by `pip wheel` (needs the index)."""
    wheels = tmp_path / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(wheels), "pynacl", "rfc8785",
                           "cffi", "pycparser"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return wheels


def test_policy_file_instead_of_key(exported, tmp_path):
    bundle = json.loads(exported["json"].read_text())
    policy = tmp_path / "policy"
    policy.write_text(f"log {exported['key']}\nwitness clock {bundle['keys']['clock']}\nquorum clock\n")
    done = runlog("verify", str(exported["json"]), "--policy", str(policy), env=exported["env"])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "witnesses clock cosigned" in done.stdout
    policy.write_text("log nonsense\nquorum none\n")
    done = runlog("verify", str(exported["json"]), "--policy", str(policy), env=exported["env"])
    assert done.returncode == 2 and done.stdout.startswith("ERROR:") and "Traceback" not in done.stderr


def test_a_key_argument_with_a_nul_byte_is_a_clean_error():
    # found by tests/fuzz/test_evidence_files.py: Path.read_text raised a bare ValueError
    from appliance.core.errors import InvalidInput
    from appliance.verify import load_key

    with pytest.raises(InvalidInput, match="embedded null byte"):
        load_key("log\x00key")
