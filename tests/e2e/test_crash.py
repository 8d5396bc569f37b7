"""Crash safety: kill -9 a real `runlog serve` at 20 random points while producers stream appends
(retrying unacknowledged ones with the same Idempotency-Key), checkpoints are cut every 0.2 s and
on demand, the outbox anchors them (local directory, and Postgres when reachable) and `runlog
backup` copies the store (the server or the backup killed meanwhile); restart it each time. After every kill every acknowledged event is stored exactly once; at the end the store
verifies and every checkpoint is in every anchor exactly once. The same code runs 60 kill points
in `python -m reliability.crash` (reliability/crash.py says how kill points are chosen)."""

from reliability.crash import PHASES, run_crash

KILLS = 20


def test_kill_9_across_ingest_checkpointing_anchoring_and_backup_loses_and_duplicates_nothing(tmp_path):
    report = run_crash(tmp_path, kills=KILLS, phases=PHASES, streaming=(0.05, 0.5))
    print("\n".join(report.lines()))
    assert not report.problems, report.problems
    assert report.kills == KILLS and set(report.phases) == set(PHASES)
    assert report.backups_verified > 0, "a backup the server's kill did not stop completes and verifies"
    assert report.acknowledged > KILLS, "the producers made progress between kills"
    assert report.entries == report.acknowledged, "retries with the same key stored nothing twice"
    assert report.checkpoints > KILLS, "checkpoints were cut and anchored across the restarts"
