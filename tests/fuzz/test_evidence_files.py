"""Malformed evidence files never crash the offline verifier: `runlog verify FILE --key KEY`
(appliance.verify.run, what the CLI calls) on near misses of a real bundle, of a real signed CSV
and its detached signature, and on bytes of any kind, answers with its exit status (1: the
evidence does not hold, 2: not readable evidence) and never a traceback.

The core parsers under it are fuzzed in tests/core/test_garbage.py; this drives the file-level
path on top (reading, BOM sniffing, the `.sig` file, key loading, the report), reusing its
near-miss strategies and seeds."""

import contextlib
import hashlib
import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.verify import run
from tests.core.test_garbage import _BUNDLE_KEY, _CSV, _CSV_NOTE, BUNDLE_BYTES, near_miss_bundle, near_miss_bytes
from tests.fuzz import examples

KEY = _BUNDLE_KEY.to_text()
SETTINGS = settings(max_examples=examples(60), suppress_health_check=[HealthCheck.function_scoped_fixture])


def _verify(directory: Path, data: bytes, name: str, signature: bytes | None = None, key: str = KEY) -> int:
    path = directory / f"{hashlib.sha256(data).hexdigest()[:16]}-{name}"
    path.write_bytes(data)
    if signature is not None:
        Path(f"{path}.sig").write_bytes(signature)
    # Like the real stdout under a UTF-8 locale: surrogate escapes from the command line print back as bytes.
    out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape")
    with contextlib.redirect_stdout(out):
        return run(str(path), key=key, policy=None, as_json=False)


def test_the_seeds_verify(tmp_path):
    assert _verify(tmp_path, BUNDLE_BYTES, "run.json") == 0
    assert _verify(tmp_path, _CSV, "run.csv", _CSV_NOTE.encode()) == 0


@SETTINGS
@given(st.one_of(near_miss_bundle(), near_miss_bytes([BUNDLE_BYTES]), st.binary(max_size=300)), st.booleans())
def test_malformed_bundles_get_an_exit_status(tmp_path_factory, mutated, as_text):
    data = mutated.encode("utf-8", "surrogatepass") if isinstance(mutated, str) else mutated
    status = _verify(tmp_path_factory.mktemp("bundle"), data, "run.json")
    assert status in (0, 1, 2)
    assert status != 0 or data == BUNDLE_BYTES or b"{" in data  # only a JSON bundle can pass


@SETTINGS
@given(st.one_of(st.just(_CSV), near_miss_bytes([_CSV])),
       st.one_of(st.just(_CSV_NOTE.encode()), near_miss_bytes([_CSV_NOTE.encode()]), st.binary(max_size=100)))
def test_malformed_csv_exports_and_signatures_get_an_exit_status(tmp_path_factory, data, signature):
    status = _verify(tmp_path_factory.mktemp("csv"), data, "run.csv", signature)
    assert status in (0, 1, 2)
    assert (status == 0) == (data == _CSV and signature == _CSV_NOTE.encode())


@SETTINGS
@given(st.one_of(st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=80),
                st.binary(max_size=20).map(lambda raw: raw.replace(b"\0", b"").decode("utf-8", "surrogateescape")), st.sampled_from([KEY[:-2], KEY + "A", KEY.replace("+", "-", 1),
                                                        "PRIVATE+KEY+" + KEY, ""])))
def test_malformed_keys_get_an_exit_status(tmp_path_factory, key):
    """Keys as the command line delivers them: any text without NUL, or bytes that are not UTF-8
    (Python hands those over as surrogate escapes)."""
    status = _verify(tmp_path_factory.mktemp("key"), BUNDLE_BYTES, "run.json", key=key or "x")
    assert status in (1, 2) if key != KEY else status == 0
