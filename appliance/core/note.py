"""C2SP signed notes (c2sp.org/signed-note), read and written as golang.org/x/mod/sumdb/note does.

A signed note is the text (ending in a newline), one blank line, then one or more lines
``— <key name> <base64(4-byte key ID || signature)>``, each ending in a newline. The whole message
is valid UTF-8 with no ASCII control character other than newline.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Protocol

from appliance.core.errors import NoteFormatError, SignatureError
from appliance.core.keys import KeyID, b64decode_strict, check_key_name

MAX_SIGNATURES = 100  # Go's note.Open limit; C2SP requires accepting at least 16.
SIGNATURE_PREFIX = "\u2014 "  # em dash, space


class Verifier(Protocol):
    """Anything that can check one named key's signatures: note keys and cosigner keys alike."""

    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> KeyID: ...

    def verify(self, text: bytes, signature: bytes) -> object:
        """Raise `SignatureError` if `signature` is not this key's signature over `text`."""
        ...


class Signer(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def key_id(self) -> KeyID: ...

    def sign(self, message: bytes) -> bytes: ...


class Signature(NamedTuple):
    """One signature line: key name, key ID, and the signature bytes that follow the key ID."""

    name: str
    key_id: KeyID
    signature: bytes


@dataclass(frozen=True)
class Note:
    """A note whose `verified` signatures were checked against a trusted key; `unverified` ones
    came from keys the caller did not name and mean nothing."""

    text: str
    verified: tuple[Signature, ...]
    unverified: tuple[Signature, ...]


class UnverifiedNoteError(SignatureError):
    """The note is well formed but no trusted key signed it (Go's UnverifiedNoteError)."""

    def __init__(self, note: Note) -> None:
        names = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in note.unverified) or "none"
        super().__init__(f"note has no verifiable signatures (signed only by unknown keys: {names})")
        self.note = note


_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _check_text(text: str, what: str) -> None:
    found = _CONTROL.search(text)
    if found is not None:
        raise NoteFormatError(f"{what} contains control character {found[0]!r}", field=what)


def _decode_message(message: bytes | str) -> str:
    if isinstance(message, str):
        try:
            message.encode("utf-8")
        except UnicodeEncodeError as err:
            raise NoteFormatError("note is not valid UTF-8", field="note") from err
        text = message
    elif isinstance(message, (bytes, bytearray, memoryview)):
        try:
            text = bytes(message).decode("utf-8")
        except UnicodeDecodeError as err:
            raise NoteFormatError(f"note is not valid UTF-8 at byte {err.start}", field="note") from err
    else:
        raise NoteFormatError("a note is bytes", field="note")
    _check_text(text, "note")
    return text


def sign_note(text: str | bytes, signers: Iterable[Signer]) -> bytes:
    """Sign `text` with each signer, in order, and return the encoded note.

    Preconditions (checked): `text` is UTF-8, ends in a newline, has no control character other
    than newline; there are 1 to 100 signers, each with a valid key name.
    """
    body = _decode_message(text) if isinstance(text, (bytes, bytearray, str)) else text
    if not isinstance(body, str):
        raise NoteFormatError("note text must be str or bytes", field="text")
    _check_text(body, "text")
    if not body.endswith("\n"):
        raise NoteFormatError("note text must end in a newline", field="text")
    message = body.encode("utf-8")
    lines = []
    for signer in signers:
        check_key_name(signer.name)
        payload = signer.key_id.value + signer.sign(message)
        lines.append(f"{SIGNATURE_PREFIX}{signer.name} {base64.b64encode(payload).decode('ascii')}\n")
    if not lines:
        raise NoteFormatError("a note needs at least one signer", field="signers")
    if len(lines) > MAX_SIGNATURES:
        raise NoteFormatError(f"a note carries at most {MAX_SIGNATURES} signatures", field="signers")
    return message + b"\n" + "".join(lines).encode("utf-8")


def _index_verifiers(verifiers: Iterable[Verifier]) -> dict[tuple[str, KeyID], list[Verifier]]:
    index: dict[tuple[str, KeyID], list[Verifier]] = {}
    for verifier in verifiers:
        index.setdefault((verifier.name, verifier.key_id), []).append(verifier)
    return index


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise NoteFormatError(f"signature line does not start with an em dash and a space: {line[:40]!r}",
                              field="signature")
    name, _, encoded = line[len(SIGNATURE_PREFIX):].partition(" ")
    check_key_name(name)
    if encoded == "":
        raise NoteFormatError(f"signature line for {name!r} has no signature", field="signature")
    raw = b64decode_strict(encoded, what="signature")
    if len(raw) < 5:
        raise NoteFormatError(f"signature for {name!r} is shorter than a key ID and one byte",
                              field="signature")
    return Signature(name, KeyID(raw[:4]), raw[4:])


def open_note(message: bytes | str, verifiers: Iterable[Verifier]) -> Note:
    """Parse `message` and check every signature made by one of `verifiers`.

    Rules, as Go's note.Open: signatures by unknown keys are kept as unverified (identical lines
    once); a repeated signature by a known key is skipped; a known key's bad signature rejects the
    note (`SignatureError`); no good signature by a known key rejects it (`UnverifiedNoteError`);
    a malformed note raises `NoteFormatError`; two verifiers with the same name and key ID that a
    signature line needs raise `SignatureError` (ambiguous key).
    """
    whole = _decode_message(message)
    split = whole.rfind("\n\n")
    if split < 0:
        raise NoteFormatError("note has no blank line before its signatures", field="note")
    text, block = whole[:split + 1], whole[split + 2:]
    if block == "" or not block.endswith("\n"):
        raise NoteFormatError("note signatures must be non-empty lines each ending in a newline",
                              field="note")
    known = _index_verifiers(verifiers)
    text_bytes = text.encode("utf-8")
    verified: list[Signature] = []
    unverified: list[Signature] = []
    seen_known: set[tuple[str, KeyID]] = set()
    seen_unknown_lines: set[str] = set()
    for count, line in enumerate(block[:-1].split("\n"), start=1):
        signature = _parse_signature_line(line)
        if count > MAX_SIGNATURES:
            raise NoteFormatError(f"note has more than {MAX_SIGNATURES} signatures", field="note")
        key = (signature.name, signature.key_id)
        candidates = known.get(key)
        if not candidates:
            if line not in seen_unknown_lines:
                seen_unknown_lines.add(line)
                unverified.append(signature)
            continue
        if len(candidates) > 1:
            raise SignatureError(f"ambiguous key {signature.name}+{signature.key_id.hex()}: "
                                 "more than one trusted verifier has this name and key ID")
        if key in seen_known:
            continue
        seen_known.add(key)
        try:
            candidates[0].verify(text_bytes, signature.signature)
        except SignatureError:
            raise
        except Exception as err:  # a verifier must not let a raw error escape the family
            raise SignatureError(f"invalid signature for key {signature.name}+"
                                 f"{signature.key_id.hex()}: {err}") from err
        verified.append(signature)
    note = Note(text, tuple(verified), tuple(unverified))
    if not verified:
        raise UnverifiedNoteError(note)
    return note
