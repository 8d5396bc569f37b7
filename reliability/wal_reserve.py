"""Does a commit that SQLite acknowledged survive the disk going read-only? One trial: a store on
ext4 (errors=remount-ro, a loop device) opened as the appliance opens it (WAL, synchronous=FULL),
a thread committing one 1 KiB row per transaction and noting each COMMIT that returned, an ext4
error injected after a random 20-300 ms (the kernel aborts the journal and remounts read-only),
then what an operator does (unmount, `e2fsck -fy`, mount) and every noted row looked for.

With `reserve=False` the WAL grows with every commit, and on Linux 6.18 an fdatasync that races
the journal abort can return 0 for a size change the abort dropped: the last acknowledged row is
gone after the repair in some trials. With `reserve=True` the WAL is given its room first
(appliance.store.wal.reserve_wal), commits overwrite blocks it already holds, and none may be lost.

    sudo python -m reliability.wal_reserve --trials 100     # both ways, the counts
"""

import argparse
import random
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.store.db import connect
from appliance.store.wal import reserve_wal
from reliability.mounts import ext4_loop, force_read_only, mount_allowed, repair_and_remount

ROW = bytes(range(256)) * 4


@dataclass
class Trial:
    committed: int  # rows whose COMMIT returned
    lost: list[int]  # of those, the ones missing after the repair
    stopped_by: str  # the error that stopped the committing thread
    fsck: int


def trial(work: Path, *, reserve: bool, rng: random.Random, size_mib: int = 64) -> Trial:
    work.mkdir(parents=True, exist_ok=True)
    image = work / "ext4.img"
    with ext4_loop(image, work / "disk", size_mib) as disk:
        db = disk / "store.sqlite"
        conn = connect(db)
        conn.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        if reserve:
            reserve_wal(conn, db)
        committed, stopped = [], []

        def commit_rows() -> None:
            n = 0
            try:
                while True:
                    conn.execute("INSERT INTO rows VALUES (?, ?)", (n, ROW))  # autocommit: COMMIT returned
                    committed.append(n)
                    n += 1
            except (sqlite3.Error, OSError) as error:
                stopped.append(f"{type(error).__name__}: {error}")

        writer = threading.Thread(target=commit_rows, name="wal-reserve-trial")
        writer.start()
        time.sleep(rng.uniform(0.02, 0.3))
        force_read_only(disk)
        writer.join(30)
        if writer.is_alive():
            raise RuntimeError("the committing thread did not stop after the disk went read-only")
        try:
            conn.close()
        except sqlite3.Error:
            pass
        fsck = repair_and_remount(image, disk)
        check = sqlite3.connect(db)  # a writable connection: it recovers the WAL as the appliance would
        try:
            stored = {n for (n,) in check.execute("SELECT n FROM rows")}
        finally:
            check.close()
    image.unlink()
    return Trial(len(committed), [n for n in committed if n not in stored], stopped[0] if stopped else "", fsck)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.wal_reserve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=40, help="trials each way")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="runlog-wal-") as work:
        refused = mount_allowed(Path(work))
        if refused is not None:
            print(f"cannot mount here ({refused}); run as root on a machine that allows loop mounts")
            return 2
        lost = {False: 0, True: 0}
        for index in range(args.trials):
            for reserve in (False, True):
                result = trial(Path(work) / f"{index}-{reserve}", reserve=reserve, rng=rng)
                lost[reserve] += bool(result.lost)
                if result.lost:
                    print(f"trial {index} reserve={reserve}: {result.committed} committed, lost {result.lost[:5]} "
                          f"(stopped by {result.stopped_by}; e2fsck {result.fsck})", flush=True)
    for reserve in (False, True):
        print(f"WAL {'reserved' if reserve else 'growing'}: acknowledged rows lost in {lost[reserve]} of "
              f"{args.trials} trials")
    return 1 if lost[True] else 0


if __name__ == "__main__":
    sys.exit(main())
