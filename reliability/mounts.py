"""Filesystems to put a data directory on and then break: a small tmpfs to fill up, and ext4 on a
loop device that the kernel can be made to remount read-only. Needs root (mount, losetup)."""

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def mount_allowed(work: Path) -> str | None:
    """None when this process may mount a tmpfs; otherwise why not."""
    probe = work / "mount-probe"
    probe.mkdir(exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe))
    if done.returncode != 0:
        return (done.stderr or done.stdout).strip() or f"mount exited {done.returncode}"
    _run("umount", str(probe))
    return None


@contextlib.contextmanager
def tmpfs(mountpoint: Path, size_mib: int) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    done = _run("mount", "-t", "tmpfs", "-o", f"size={size_mib}m", "tmpfs", str(mountpoint))
    if done.returncode != 0:
        raise OSError(f"mount tmpfs: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        unmount(mountpoint)


def unmount(mountpoint: Path) -> None:
    """Unmount, lazily if something still holds it, so a failed run never leaves a mount behind."""
    if _run("umount", str(mountpoint)).returncode != 0:
        _run("umount", "-l", str(mountpoint))


@contextlib.contextmanager
def ext4_loop(image: Path, mountpoint: Path, size_mib: int) -> Iterator[Path]:
    """ext4 in `image` on a loop device at `mountpoint`, mounted errors=remount-ro."""
    with open(image, "wb") as handle:
        handle.truncate(size_mib * 1024 * 1024)
    for args in (("mkfs.ext4", "-q", "-F", str(image)),):
        done = _run(*args)
        if done.returncode != 0:
            raise OSError(f"{args[0]}: {done.stderr.strip()}")
    mountpoint.mkdir(parents=True, exist_ok=True)
    mount_ext4(image, mountpoint)
    try:
        yield mountpoint
    finally:
        unmount(mountpoint)


def mount_ext4(image: Path, mountpoint: Path) -> None:
    done = _run("mount", "-o", "loop,errors=remount-ro", str(image), str(mountpoint))
    if done.returncode != 0:
        raise OSError(f"mount {image}: {done.stderr.strip()}")


def force_read_only(mountpoint: Path) -> None:
    """Inject an ext4 error: with errors=remount-ro the kernel makes the filesystem read-only now."""
    device = Path(_run("findmnt", "-no", "SOURCE", str(mountpoint)).stdout.strip()).name
    Path(f"/sys/fs/ext4/{device}/trigger_fs_error").write_text("reliability.disk: simulated I/O error\n")


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem says ENOSPC; return it."""
    filler = directory / "filler"
    chunk = b"\0" * (256 * 1024)
    with open(filler, "wb", buffering=0) as handle:
        while True:
            try:
                handle.write(chunk)
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                break
        with contextlib.suppress(OSError):
            os.fsync(handle.fileno())
    return filler


def repair_and_remount(image: Path, mountpoint: Path) -> int:
    """What an operator does after the kernel remounted a disk read-only: unmount, `e2fsck -fy`,
    mount again. Returns e2fsck's exit status (1: errors corrected)."""
    if (done := _run("umount", str(mountpoint))).returncode != 0:
        raise OSError(f"umount {mountpoint}: {done.stderr.strip()}")
    fsck = _run("e2fsck", "-fy", str(image))
    mount_ext4(image, mountpoint)
    return fsck.returncode
