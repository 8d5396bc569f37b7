"""Key files: the edge where note keys meet the disk.

A key file holds one key string and a newline, in Go's golang.org/x/mod/sumdb/note format, so the
same files work with Go tooling. Private key files are created 0600 and refused when group or
others can read or write them; public key files are created 0644. Neither is ever overwritten.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Union

from appliance.core.cosignature import ALG_COSIGNATURE_V1, CosignatureSigner, CosignatureVerifier
from appliance.core.errors import RunlogError
from appliance.core.keys import ALG_ED25519, NoteSigner, NoteVerifier, key_type_of
from appliance.dirsync import fsync_directory

Signer = Union[NoteSigner, CosignatureSigner]
Verifier = Union[NoteVerifier, CosignatureVerifier]

_MAX_KEY_FILE = 64 * 1024
_PRIVATE_MODE = 0o600
_PUBLIC_MODE = 0o644


class KeyFileError(RunlogError):
    """A key file is missing, unsafe, unreadable, malformed, or already exists."""


def save_signer(path: str | os.PathLike[str], signer: Signer) -> None:
    """Write `signer`'s secret key string to a new file with mode 0600; refuse an existing file."""
    _create_exclusive(Path(path), signer.to_text(), _PRIVATE_MODE)


def save_verifier(path: str | os.PathLike[str], verifier: Verifier) -> None:
    """Write `verifier`'s public key string to a new file with mode 0644; refuse an existing file."""
    _create_exclusive(Path(path), verifier.to_text(), _PUBLIC_MODE)


def load_signer(path: str | os.PathLike[str]) -> Signer:
    """Read a signer key file; refuse it if group or others may read or write it.

    Returns a `NoteSigner` for an Ed25519 note key (type 0x01) and a `CosignatureSigner` for a
    cosignature/v1 key (type 0x04).
    """
    path = Path(path)
    text = _read(path, private=True)
    try:
        kind = key_type_of(text)
        if kind == ALG_ED25519:
            return NoteSigner.from_text(text)
        if kind == ALG_COSIGNATURE_V1:
            return CosignatureSigner.from_text(text)
    except RunlogError as err:
        raise KeyFileError(f"{path}: not a valid signer key: {err}") from err
    raise KeyFileError(f"{path}: unsupported signer key type 0x{kind:02x}")


def load_verifier(path: str | os.PathLike[str]) -> Verifier:
    """Read a verifier key file (note key 0x01 or cosigner key 0x04)."""
    path = Path(path)
    text = _read(path, private=False)
    if text.startswith("PRIVATE+KEY+"):
        raise KeyFileError(f"{path} holds a private signer key, not a public verifier key")
    try:
        kind = key_type_of(text)
        if kind == ALG_ED25519:
            return NoteVerifier.from_text(text)
        if kind == ALG_COSIGNATURE_V1:
            return CosignatureVerifier.from_text(text)
    except RunlogError as err:
        raise KeyFileError(f"{path}: not a valid verifier key: {err}") from err
    raise KeyFileError(f"{path}: unsupported verifier key type 0x{kind:02x}")


def _create_exclusive(path: Path, key_text: str, mode: int) -> None:
    data = (key_text + "\n").encode("utf-8")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError as err:
        raise KeyFileError(f"{path} already exists; refusing to overwrite a key file") from err
    except OSError as err:
        raise KeyFileError(f"cannot create key file {path}: {err.strerror}") from err
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have narrowed the mode; make it exact
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        fsync_directory(path.parent)
    except OSError as err:
        path.unlink(missing_ok=True)  # never leave a half-written key behind
        raise KeyFileError(f"cannot write key file {path}: {err.strerror}") from err


def _read(path: Path, *, private: bool) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as err:
        raise KeyFileError(f"no key file at {path}") from err
    except OSError as err:
        raise KeyFileError(f"cannot open key file {path}: {err.strerror}") from err
    try:
        info = os.fstat(fd)  # check the file we opened, not whatever the path names later
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path} is not a regular file")
        if private and info.st_mode & 0o077:
            raise KeyFileError(
                f"{path} holds a private key but is accessible by group or others "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run `chmod 600 {path}` and try again")
        data = b""
        while len(data) <= _MAX_KEY_FILE and (chunk := os.read(fd, _MAX_KEY_FILE + 1 - len(data))):
            data += chunk
    except OSError as err:
        raise KeyFileError(f"cannot read key file {path}: {err.strerror}") from err
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{path} is too large to be a key file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise KeyFileError(f"{path} is not UTF-8 text") from err
    return text.removesuffix("\n").removesuffix("\r")
