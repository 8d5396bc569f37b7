"""Disk trouble while serving: the data directory's filesystem fills up, or goes read-only.

- full: the data directory is a small tmpfs; a filler file takes its last bytes while producers
  stream; once the room the writer reserved in its WAL is used up, appends must fail with a 503
  JSON error, reads keep working, and once the filler is deleted appends succeed again without a
  restart. Nothing a 503 answered may be in the store.
- read-only: the data directory is ext4 on a loop device mounted `errors=remount-ro`; after the
  first 150 acknowledged appends an error is injected (`/sys/fs/ext4/<dev>/trigger_fs_error`), so
  the kernel remounts it read-only under the running server, as it does after a real I/O error.
  Appends must fail with 503; the server must stop cleanly on SIGTERM; after `e2fsck` and a fresh
  mount (what an operator does) it starts on the same store without any repair of its own and
  every acknowledged event is there.

Why these two ways (what this machine allows, as root in a VM): `mount` works for tmpfs and ext4
on loop devices, but `mount -o remount,ro` is refused with EBUSY while SQLite holds its files
open for writing (the kernel refuses a read-only remount with writers), and `chattr +i` or
`chmod` only stop new opens, not writes through the descriptors the server already holds.

    sudo python -m reliability.disk        # both scenarios, longer (needs root for mount)
"""

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from reliability.checks import ledger_problems, verify_store
from reliability.mounts import ext4_loop, fill, force_read_only, mount_allowed, repair_and_remount, tmpfs
from reliability.load import Load
from tests.e2e.server import ADMIN_TOKEN, Server

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# The read-only case fails the disk this early, before SQLite's first checkpoint (1,000 pages),
# whatever the machine's speed: the WAL is still at its start, where commits would grow the file
# but for the room the writer reserves (appliance/store/wal.py). Without the reserve the last
# acknowledged group (1-4 events) was lost in 5 of 25 runs with the CPU and disk busy, with it in
# 0 of 25 (alternated); after 1.5 s of ingest instead, in 2 of 40 runs, when load kept it short.
YOUNG_WAL_ACKS = 150
PROBE_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def stop(server: Server) -> None:
    """Kill the server and close its log, which lives in the mount's directory tree."""
    server.kill()
    server.log.close()


@dataclass
class DiskReport:
    scenario: str
    acknowledged: int = 0
    refused: dict[str, int] = field(default_factory=dict)  # failures while the disk was in trouble
    entries: int = 0
    recovered_after: float | None = None  # seconds from space/write access returning to the next ack
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"disk {self.scenario}: {self.acknowledged} acknowledged, refused while in trouble: {self.refused}, "
               f"{self.entries} entries stored"
               + (f", appends again {self.recovered_after:.2f} s after recovery" if self.recovered_after is not None else "")]
        out += [f"  {note}" for note in self.notes]
        out += [f"  PROBLEM: {p}" for p in self.problems] or ["  every check held"]
        return out


def _probe_refusal(server: Server, report: DiskReport) -> None:
    """One append and one read while the disk is in trouble: a 503 JSON error, and the read works."""
    response = httpx.post(f"{server.url}/v1/events", headers=AUTH, timeout=30,
                          json={"trace_id": PROBE_TRACE, "step": "probe", "status": "info"})
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        code = None
    if response.status_code != 503 or code != "store_unavailable":
        report.problems.append(f"an append while the disk is in trouble got {response.status_code} {response.text[:300]}")
    else:
        report.notes.append(f"append answered 503 store_unavailable: {response.json()['error']['message'][:120]}")
    # A cut may still fit in space SQLite already holds (201), or must be refused with a 503 JSON error.
    cut = httpx.post(f"{server.url}/v1/checkpoints", headers=AUTH, timeout=30)
    if cut.status_code == 503 and cut.headers.get("content-type", "").startswith("application/json"):
        report.notes.append(f"checkpoint cut answered 503: {cut.json()['error']['message'][:120]}")
    elif cut.status_code in (200, 201):
        report.notes.append(f"checkpoint cut answered {cut.status_code}: it fitted in space SQLite already held")
    else:
        report.problems.append(f"a checkpoint cut while the disk is in trouble got {cut.status_code} {cut.text[:300]}")
    health = httpx.get(f"{server.url}/healthz", timeout=30)
    report.notes.append(f"/healthz answered {health.status_code} {health.json().get('checks', {})}")
    runs = httpx.get(f"{server.url}/v1/runs", headers=AUTH, timeout=30)
    if runs.status_code != 200:
        report.problems.append(f"reads failed while the disk was in trouble: GET /v1/runs {runs.status_code}")


def _cut_after_recovery(server: Server, report: DiskReport) -> None:
    cut = httpx.post(f"{server.url}/v1/checkpoints", headers=AUTH, timeout=30)
    if cut.status_code not in (200, 201):
        report.problems.append(f"a checkpoint cut after recovery got {cut.status_code} {cut.text[:300]}")


def _seconds_until(condition, timeout: float, poll: float = 0.01) -> float | None:
    """Seconds until `condition()` holds, None if it does not within `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(poll)
    return None


def _wait_for_acks(load: Load, timeout: float) -> float | None:
    """Seconds until the producers get a new acknowledgement."""
    before = load.acknowledged
    return _seconds_until(lambda: load.acknowledged > before, timeout)


def _wait_for_acknowledged(load: Load, count: int, timeout: float) -> float | None:
    return _seconds_until(lambda: load.acknowledged >= count, timeout, poll=0.005)


def _wait_for_refusals(load: Load, timeout: float) -> float | None:
    """Seconds until the producers see their first failure, None if none within `timeout`."""
    before = load.failed
    return _seconds_until(lambda: load.failed > before, timeout)


def _settle(load: Load, seconds: float) -> dict[str, int]:
    errors_before = dict(load.errors)
    time.sleep(seconds)
    return {k: v - errors_before.get(k, 0) for k, v in load.errors.items() if v > errors_before.get(k, 0)}


def _final(server: Server, report: DiskReport, load: Load, *, stored_must_be_acked: bool) -> None:
    _, problems = verify_store(server, anchors=False)
    report.problems += problems
    report.entries, problems = ledger_problems(server.data_dir / "runlog.sqlite", load.ledgers)
    report.problems += problems
    report.acknowledged = load.acknowledged
    unacked = report.entries - report.acknowledged  # below 0 when some were lost: ledger_problems says which
    if unacked > 0 and stored_must_be_acked:
        report.problems.append(f"{unacked} stored events were answered with an error (half-written)")
    elif unacked > 0:
        report.notes.append(f"{unacked} events stored whole although their request was answered 503 (durable "
                            "before the filesystem failed; a retry with the same Idempotency-Key gets the receipt)")


def disk_full(work: Path, *, seconds: float = 2.0, size_mib: int | None = None) -> DiskReport:
    """`seconds` of ingest before, during and after; the tmpfs leaves room for the store to keep
    growing (~1-3 MiB/s at full speed) once the filler is gone, and for the writer's WAL reserve
    (16 MiB, made only while as much again stays free: appliance/store/wal.py)."""
    size_mib = size_mib or max(64, int(10 * seconds))
    report = DiskReport(f"full ({size_mib} MiB tmpfs)")
    work.mkdir(parents=True, exist_ok=True)
    with tmpfs(work / "disk", size_mib) as disk:
        server = Server(disk / "data").start()
        load = Load(server.url, ADMIN_TOKEN, 4).start()
        try:
            time.sleep(seconds)
            filler = fill(disk)
            # The writer reserved room in its WAL (appliance/store/wal.py): commits go on into it
            # until a checkpoint, which needs the database file to grow, cannot free it.
            refusing = _wait_for_refusals(load, timeout=120)
            if refusing is None:
                report.problems.append("appends still succeeded 120 s after the disk was filled")
            else:
                report.notes.append(f"first append refused {refusing:.1f} s after the disk was filled")
            report.refused = _settle(load, seconds)
            _probe_refusal(server, report)
            filler.unlink()
            report.recovered_after = _wait_for_acks(load, timeout=30)
            if report.recovered_after is None:
                report.problems.append("no append succeeded within 30 s of the space returning")
            time.sleep(seconds)
            load.stop()
            _cut_after_recovery(server, report)
            if server.terminate() != 0:
                report.problems.append(f"runlog serve did not stop cleanly: {server.output()}")
        finally:
            load.stop()
            stop(server)
        _final(server, report, load, stored_must_be_acked=True)
    if not report.refused:
        report.problems.append("no request was refused while the disk was full: the test did not fill it")
    elif set(report.refused) - {"HTTP 503"}:
        report.problems.append(f"requests failed other than with 503 while the disk was full: {report.refused}")
    return report


def disk_read_only(work: Path, *, seconds: float = 2.0, size_mib: int = 64,
                   acknowledged_before: int = YOUNG_WAL_ACKS) -> DiskReport:
    """The disk fails once `acknowledged_before` appends were acknowledged; `seconds` read-only,
    then `seconds` of ingest after the restart."""
    report = DiskReport("read-only (ext4 errors=remount-ro on a loop device)")
    work.mkdir(parents=True, exist_ok=True)
    image = work / "ext4.img"
    with ext4_loop(image, work / "disk", size_mib) as disk:
        server = Server(disk / "data").start()
        load = Load(server.url, ADMIN_TOKEN, 4).start()
        try:
            if _wait_for_acknowledged(load, acknowledged_before, timeout=60) is None:
                report.problems.append(f"fewer than {acknowledged_before} appends acknowledged within 60 s")
            force_read_only(disk)
            report.notes.append(f"the disk failed after {load.acknowledged} acknowledged appends")
            report.refused = _settle(load, seconds)
            _probe_refusal(server, report)
            load.stop()
            status = server.terminate()
            report.notes.append(f"SIGTERM on a read-only store: exit status {status}")
            if status != 0:
                report.problems.append(f"runlog serve did not stop cleanly on a read-only store: {server.output()}")
        finally:
            load.stop()
            stop(server)
        # What an operator does after the kernel remounted a disk read-only; nothing in the store.
        wal = disk / "data" / "runlog.sqlite-wal"
        held = wal.stat().st_size if wal.exists() else None  # as the page cache has it
        fsck = repair_and_remount(image, disk)
        remounted = time.monotonic()
        report.notes.append(f"e2fsck -fy exited {fsck} (1: errors corrected); the WAL was {held} bytes before the "
                            f"unmount, {wal.stat().st_size if wal.exists() else None} after")
        server = Server(disk / "data", port=server.port).start()
        resumed = Load(server.url, ADMIN_TOKEN, 4, ledgers=load.ledgers)  # one ledger before and after
        try:
            resumed.start()
            report.recovered_after = _wait_for_acks(resumed, timeout=30)
            report.notes.append(f"restarted and appending again {time.monotonic() - remounted:.1f} s after the remount")
            time.sleep(seconds)
            resumed.stop()
            _cut_after_recovery(server, report)
            server.terminate()
        finally:
            resumed.stop()
            stop(server)
        load.windows += resumed.windows
        _final(server, report, load, stored_must_be_acked=False)
    if set(report.refused) - {"HTTP 503"}:
        report.problems.append(f"requests failed other than with 503 while read-only: {report.refused}")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.disk", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="load before, during and after the trouble")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runlog-disk-") as work:
        refused = mount_allowed(Path(work))
        if refused is not None:
            print(f"cannot mount here ({refused}); run as root on a machine that allows tmpfs and loop mounts")
            return 2
        reports = [disk_full(Path(work) / "full", seconds=args.seconds),
                   disk_read_only(Path(work) / "ro", seconds=args.seconds)]
    for report in reports:
        print("\n".join(report.lines()))
    return 0 if not any(r.problems for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
