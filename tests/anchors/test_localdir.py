"""The local-directory anchor: one read-only file per checkpoint, never overwritten."""

import os
import stat

import pytest

from appliance import dirsync
from appliance.anchors import localdir
from appliance.anchors.base import AnchoredCheckpoint, AnchorError, AnchorFork
from appliance.anchors.localdir import LocalDirAnchor
from appliance.core.keys import generate_signer
from tests.anchors.conftest import ORIGIN, note_for


def test_publish_writes_one_read_only_file_per_checkpoint(tmp_path):
    anchor = LocalDirAnchor(tmp_path / "anchor", origin=ORIGIN)
    note = note_for(5)
    location = anchor.publish(AnchoredCheckpoint(ORIGIN, 5, note))
    path = tmp_path / "anchor" / "test.example%2Fanchors" / "checkpoints" / "00000000000000000005"
    assert location == str(path) and path.read_text() == note
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert os.listdir(path.parent) == [path.name], "no temporary file is left behind"
    assert anchor.name == f"dir:{tmp_path / 'anchor'}"


def test_the_first_publish_makes_the_directories_it_created_durable(tmp_path, monkeypatch):
    synced: list = []
    real = dirsync.fsync_directory
    spy = lambda directory: (synced.append(directory), real(directory))  # noqa: E731
    monkeypatch.setattr(dirsync, "fsync_directory", spy)
    monkeypatch.setattr(localdir, "fsync_directory", spy)
    anchor = LocalDirAnchor(tmp_path / "anchor", origin=ORIGIN)
    folder = tmp_path / "anchor" / "test.example%2Fanchors" / "checkpoints"
    anchor.publish(AnchoredCheckpoint(ORIGIN, 5, note_for(5)))
    # each new directory's entry lives in its parent: the anchor's parent, the anchor, the origin's folder
    assert synced == [tmp_path, tmp_path / "anchor", folder.parent, folder]
    synced.clear()
    anchor.publish(AnchoredCheckpoint(ORIGIN, 6, note_for(6)))
    assert synced == [folder], "later publishes sync only the folder the new file is linked in"


def test_same_note_again_is_a_no_op_with_the_same_location(tmp_path):
    anchor = LocalDirAnchor(tmp_path, origin=ORIGIN)
    checkpoint = AnchoredCheckpoint(ORIGIN, 7, note_for(7))
    first = anchor.publish(checkpoint)
    mtime = os.stat(first).st_mtime_ns
    assert anchor.publish(checkpoint) == first
    assert os.stat(first).st_mtime_ns == mtime


def test_a_different_note_for_the_same_size_is_a_fork_and_nothing_is_overwritten(tmp_path):
    anchor = LocalDirAnchor(tmp_path, origin=ORIGIN)
    ours = note_for(7)
    anchor.publish(AnchoredCheckpoint(ORIGIN, 7, ours))
    other = note_for(7, b"\x01" * 32)
    with pytest.raises(AnchorFork) as fork:
        anchor.publish(AnchoredCheckpoint(ORIGIN, 7, other))
    assert fork.value.size == 7 and "a different root" in str(fork.value)
    assert anchor.fetch(7).note == ours
    resigned = note_for(7, timestamp=1_795_000_001)
    with pytest.raises(AnchorFork, match="same root with different signatures"):
        anchor.publish(AnchoredCheckpoint(ORIGIN, 7, resigned))


def test_fetch_latest_and_listing_in_size_order(tmp_path):
    anchor = LocalDirAnchor(tmp_path, origin=ORIGIN)
    assert anchor.fetch(1) is None and anchor.latest() is None and list(anchor.checkpoints()) == []
    for size in (10, 2, 300):
        anchor.publish(AnchoredCheckpoint(ORIGIN, size, note_for(size)))
    (tmp_path / "test.example%2Fanchors" / "checkpoints" / "notes.txt").write_text("ignored")
    assert [c.size for c in anchor.checkpoints()] == [2, 10, 300]
    assert anchor.latest() == AnchoredCheckpoint(ORIGIN, 300, note_for(300))
    assert anchor.fetch(10).checkpoint().size == 10


def test_another_origin_and_an_unwritable_directory_are_anchor_errors(tmp_path):
    anchor = LocalDirAnchor(tmp_path / "file", origin=ORIGIN)
    with pytest.raises(AnchorError, match="keeps checkpoints of"):
        anchor.publish(AnchoredCheckpoint.from_note(note_for(1, signer=generate_signer("other/log"))))
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(AnchorError, match="cannot write"):
        anchor.publish(AnchoredCheckpoint(ORIGIN, 1, note_for(1)))
