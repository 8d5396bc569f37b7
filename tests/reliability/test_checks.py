"""reliability/checks.py's wait for the anchors: a fork ends it at once instead of after its timeout."""

import time

import pytest

from appliance.anchors.base import AnchoredCheckpoint
from appliance.anchors.localdir import LocalDirAnchor
from appliance.anchors.outbox import Outbox
from appliance.store.db import connect, migrate
from reliability.checks import wait_until_anchored
from tests.anchors.conftest import ORIGIN, Clock, add_checkpoint, note_for


@pytest.fixture
def store_and_anchor(tmp_path):
    db = tmp_path / "runlog.sqlite"
    conn = connect(db)
    migrate(conn)
    conn.close()
    return db, LocalDirAnchor(tmp_path / "anchor", origin=ORIGIN)


def test_a_forked_anchor_ends_the_wait_at_once_and_says_so(store_and_anchor):
    db, anchor = store_and_anchor
    anchor.publish(AnchoredCheckpoint(ORIGIN, 4, note_for(4, b"\x66" * 32)))  # someone else's history
    add_checkpoint(db, 4)
    add_checkpoint(db, 5)
    Outbox(db, [anchor], origin=ORIGIN, clock=Clock()).push()
    started = time.monotonic()
    problems = wait_until_anchored(db, [anchor.name], timeout=60)
    assert time.monotonic() - started < 5
    assert len(problems) == 1 and problems[0].startswith(f"anchor {anchor.name}: a checkpoint failed for good")
    assert "FORK" in problems[0]


def test_an_anchored_store_needs_no_wait(store_and_anchor):
    db, anchor = store_and_anchor
    add_checkpoint(db, 3)
    Outbox(db, [anchor], origin=ORIGIN, clock=Clock()).push()
    assert wait_until_anchored(db, [anchor.name], timeout=60) == []
