"""Disk trouble while serving (reliability/disk.py): the data directory's filesystem fills up
(tmpfs) or the kernel remounts it read-only (ext4 errors=remount-ro on a loop device). Appends get
a 503 JSON error, nothing refused is stored, and the appliance recovers without repair of its own.
Needs root for mount; skipped, saying why, where the machine does not allow it."""

import pytest

from reliability.disk import disk_full, disk_read_only, mount_allowed


@pytest.fixture
def work(tmp_path):
    refused = mount_allowed(tmp_path)
    if refused is not None:
        pytest.skip(f"this machine does not allow mount: {refused}")
    return tmp_path


def test_a_full_disk_refuses_appends_with_503_and_recovers_when_space_returns(work):
    report = disk_full(work, seconds=1.5)
    print("\n".join(report.lines()))
    assert not report.problems, report.problems
    assert report.refused.get("HTTP 503", 0) > 0 and report.recovered_after is not None
    assert report.entries == report.acknowledged


def test_a_disk_gone_read_only_refuses_appends_with_503_and_the_store_restarts_as_it_was(work):
    report = disk_read_only(work, seconds=1.5)
    print("\n".join(report.lines()))
    assert not report.problems, report.problems
    assert report.refused.get("HTTP 503", 0) > 0 and report.recovered_after is not None
