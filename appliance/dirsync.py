"""Directory entries that survive a crash: a file created, linked or renamed in a directory is
durable only once the directory itself is synced, and a new directory only once its parent is."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make a file created or renamed in `directory` survive a crash (its entry is durable)."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_directory(path: Path, mode: int = 0o777) -> None:
    """`mkdir -p path` whose new directories survive a crash: each one's parent is synced after it
    is made. Existing directories are left as they are (`mode` applies to new ones)."""
    missing = []
    parent = path
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    path.mkdir(parents=True, exist_ok=True, mode=mode)
    for created in reversed(missing):
        fsync_directory(created.parent)
