"""The soak's CI version: 30 s of 32 producers against a real `runlog serve` while checkpoints are
cut, anchored and exports verified; the long run is `python -m reliability.soak --minutes 10`.
Figures are printed (run with -s to see them), never asserted."""

from reliability.soak import run_soak


def test_half_a_minute_of_full_speed_ingest_loses_duplicates_and_breaks_nothing(tmp_path):
    report = run_soak(tmp_path, seconds=30, clients=32, window=5)
    print("\n".join(report.lines()))
    assert not report.problems, report.problems
    assert report.acknowledged > 0 and report.failed == 0
    assert report.entries == report.acknowledged, "every stored event was acknowledged, and only once"
    assert report.exports_verified > 0 and report.checkpoints > 1
