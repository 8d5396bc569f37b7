"""C2SP tlog-cosignature ``cosignature/v1``: timestamped Ed25519 cosignatures (signature type 0x04).

The cosigner signs ``cosignature/v1\\ntime <T>\\n`` followed by the checkpoint body; its note
signature is ``key ID (4) || T as u64 big-endian (8) || Ed25519 signature (64)``. Timestamps are
POSIX seconds and are always passed in: nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import nacl.signing

from appliance.core.errors import InvalidInput, NoteFormatError, SignatureError
from appliance.core.keys import (
    ED25519_SIGNATURE_SIZE,
    KeyID,
    _PublicKey,
    check_key_length,
    check_key_name,
    ed25519_verify,
    expect_key_id,
    expect_type,
    format_signer_key_string,
    split_signer_key,
)

ALG_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = 2**63 - 1
TIMESTAMP_SIZE = 8
COSIGNATURE_SIZE = TIMESTAMP_SIZE + ED25519_SIGNATURE_SIZE


def check_timestamp(timestamp: object) -> int:
    """Return `timestamp` if it is an int in [0, 2^63 - 1] (POSIX seconds), else raise."""
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise InvalidInput("a cosignature timestamp is an integer number of seconds in [0, 2^63-1]",
                           field="timestamp")
    return timestamp


def cosigned_message(text: bytes, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: header line, time line, then the checkpoint body."""
    return b"cosignature/v1\ntime %d\n" % check_timestamp(timestamp) + text


def timestamp_of(signature: bytes) -> int:
    """The timestamp inside a cosignature/v1 signature (the bytes after the key ID).

    Precondition: `signature` was verified, or the caller only wants to read the claim.
    """
    if not isinstance(signature, (bytes, bytearray)):
        raise NoteFormatError(f"a cosignature/v1 signature is bytes, got {type(signature).__name__}",
                              field="signature")
    if len(signature) != COSIGNATURE_SIZE:
        raise NoteFormatError(f"a cosignature/v1 signature is {COSIGNATURE_SIZE} bytes after the key ID, "
                              f"got {len(signature)}", field="signature")
    timestamp = int.from_bytes(signature[:TIMESTAMP_SIZE], "big")
    if timestamp > MAX_TIMESTAMP:
        raise NoteFormatError("cosignature timestamp exceeds 2^63-1", field="timestamp")
    return timestamp


@dataclass(frozen=True)
class Cosignature:
    """A verified cosignature: who cosigned, with which key, and the time they attest."""

    name: str
    key_id: KeyID
    timestamp: int


@dataclass(frozen=True)
class CosignatureVerifier(_PublicKey):
    """Checks cosignature/v1 signatures by one named Ed25519 cosigner key (type 0x04)."""

    SIGNATURE_TYPE: ClassVar[int] = ALG_COSIGNATURE_V1
    KIND: ClassVar[str] = "cosigner verifier key"

    def verify(self, text: bytes, signature: bytes) -> int:
        """Return the attested timestamp if `signature` cosigns `text`; raise `SignatureError` if not."""
        key = f"{self.name}+{self.key_id.hex()}"
        try:
            timestamp = timestamp_of(signature)
        except NoteFormatError as err:
            raise SignatureError(f"invalid cosignature for key {key}: {err}") from err
        if not isinstance(text, (bytes, bytearray)):
            raise SignatureError(f"invalid cosignature for key {key}: the signed text must be bytes")
        message = cosigned_message(bytes(text), timestamp)
        if not ed25519_verify(self.public_key, message, signature[TIMESTAMP_SIZE:]):
            raise SignatureError(f"invalid cosignature for key {key}")
        return timestamp


@dataclass(frozen=True)
class CosignatureSigner:
    """Makes cosignature/v1 signatures; `at(timestamp)` gives a note signer for one moment."""

    name: str
    signing_key: nacl.signing.SigningKey = field(repr=False)
    key_id: KeyID = field(init=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.signing_key, nacl.signing.SigningKey):
            raise NoteFormatError("signing_key must be a nacl.signing.SigningKey", field="signing_key")
        object.__setattr__(self, "key_id", KeyID.for_key(self.name, ALG_COSIGNATURE_V1, self.public_key))

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> CosignatureSigner:
        return cls(name, nacl.signing.SigningKey(check_key_length(seed, "seed")))

    @classmethod
    def from_text(cls, text: str) -> CosignatureSigner:
        """Parse ``PRIVATE+KEY+name+hexid+base64(0x04||seed)`` (transparency-dev/formats' form)."""
        name, declared, signature_type, seed = split_signer_key(text)
        expect_type(signature_type, ALG_COSIGNATURE_V1, "cosigner signer key")
        signer = cls.from_seed(name, seed)
        expect_key_id(declared, signer.key_id, "cosigner signer key")
        return signer

    def to_text(self) -> str:
        """The secret signer key string; whoever holds it can cosign as this key."""
        return format_signer_key_string(self.name, self.key_id, ALG_COSIGNATURE_V1, bytes(self.signing_key))

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def sign(self, text: bytes, timestamp: int) -> bytes:
        """``timestamp (u64 big-endian) || Ed25519(cosigned_message(text, timestamp))``."""
        signature = self.signing_key.sign(cosigned_message(bytes(text), timestamp)).signature
        return timestamp.to_bytes(TIMESTAMP_SIZE, "big") + signature

    def at(self, timestamp: int) -> TimestampedCosigner:
        return TimestampedCosigner(self, check_timestamp(timestamp))

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.public_key)


@dataclass(frozen=True)
class TimestampedCosigner:
    """A cosigner bound to one timestamp, usable wherever a note signer is expected."""

    cosigner: CosignatureSigner
    timestamp: int

    @property
    def name(self) -> str:
        return self.cosigner.name

    @property
    def key_id(self) -> KeyID:
        return self.cosigner.key_id

    def sign(self, message: bytes) -> bytes:
        return self.cosigner.sign(message, self.timestamp)


def generate_cosigner(name: str, seed: bytes | None = None) -> CosignatureSigner:
    """A new cosigner key; a given 32-byte `seed` makes it deterministic (tests only)."""
    if seed is None:
        return CosignatureSigner(name, nacl.signing.SigningKey.generate())
    return CosignatureSigner.from_seed(name, seed)
