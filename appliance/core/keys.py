"""Ed25519 note keys: key IDs, signers, verifiers and their Go-compatible key strings.

Key strings follow golang.org/x/mod/sumdb/note (and C2SP signed-note):

- verifier key: ``<name>+<8 hex digits key ID>+<base64(type byte || 32-byte public key)>``
- signer key:   ``PRIVATE+KEY+<name>+<8 hex digits key ID>+<base64(type byte || 32-byte seed)>``

Type byte 0x01 is a plain Ed25519 note signature; 0x04 (timestamped cosignatures) lives in
`appliance.core.cosignature` and reuses the helpers here.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import ClassVar, Self

import nacl.exceptions
import nacl.signing

from appliance.core.errors import NoteFormatError, SignatureError
from appliance.core.hashing import sha256

KEY_ID_SIZE = 4
ED25519_KEY_SIZE = 32
ED25519_SIGNATURE_SIZE = 64
ALG_ED25519 = 0x01

_PRIVATE_PREFIX = "PRIVATE+KEY+"
_HEX_ID = re.compile(r"[0-9a-fA-F]{8}")
# RFC 4648 section 4 with mandatory padding, which is what Go's base64.StdEncoding accepts
# (apart from its silent skipping of CR/LF, which cannot occur inside a note line anyway).
_STD_BASE64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")


def b64decode_strict(text: str, *, what: str) -> bytes:
    """Decode padded standard base64 (RFC 4648 section 4); `what` names the field in errors."""
    if not isinstance(text, str) or _STD_BASE64.fullmatch(text) is None:
        raise NoteFormatError(f"{what} is not padded standard base64", field=what)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as err:  # pragma: no cover - the pattern already rules these out
        raise NoteFormatError(f"{what} is not padded standard base64: {err}", field=what) from err


_NAME_FORBIDDEN = re.compile(r"[+\s\x00-\x1f]")


def check_key_name(name: object) -> str:
    """Return `name` if it is a valid note key name, else raise `NoteFormatError`.

    Go's rule (isValidName): non-empty, valid UTF-8, no Unicode space, no '+'. We also refuse ASCII
    control characters, because a signature line carrying one could never be part of a valid note.
    """
    if not isinstance(name, str) or name == "":
        raise NoteFormatError("key name must be a non-empty string", field="name")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as err:
        raise NoteFormatError("key name is not valid UTF-8", field="name") from err
    found = _NAME_FORBIDDEN.search(name)  # \s is str.isspace()'s set
    if found is not None:
        raise NoteFormatError(f"key name {name!r} contains {found[0]!r}; names may not contain spaces, "
                              "control characters or '+'", field="name")
    return name


@dataclass(frozen=True)
class KeyID:
    """The 4-byte key ID of a note key; on the wire it is big-endian, in key strings 8 hex digits."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes) or len(self.value) != KEY_ID_SIZE:
            raise NoteFormatError(f"a key ID is exactly {KEY_ID_SIZE} bytes", field="key_id")

    @classmethod
    def from_bytes(cls, value: bytes) -> KeyID:
        if not isinstance(value, (bytes, bytearray, memoryview)):  # bytes(5) would be five zeros
            raise NoteFormatError(f"a key ID is {KEY_ID_SIZE} bytes, got {type(value).__name__}", field="key_id")
        return cls(bytes(value))

    @classmethod
    def from_hex(cls, text: str) -> KeyID:
        """Parse exactly 8 hex digits (either case, as Go's strconv.ParseUint(s, 16, 32) does)."""
        if not isinstance(text, str) or _HEX_ID.fullmatch(text) is None:
            raise NoteFormatError("key ID must be exactly 8 hex digits", field="key_id")
        return cls(bytes.fromhex(text))

    @classmethod
    def for_key(cls, name: str, signature_type: int, public_key: bytes) -> KeyID:
        """SHA-256(name || "\\n" || signature type byte || public key)[:4] (C2SP signed-note)."""
        material = name.encode("utf-8") + b"\n" + bytes([signature_type]) + public_key
        return cls(sha256(material)[:KEY_ID_SIZE])

    def hex(self) -> str:
        return self.value.hex()

    def __str__(self) -> str:
        return self.hex()

    def __repr__(self) -> str:
        return f"KeyID({self.hex()})"


def check_key_length(key: object, what: str) -> bytes:
    """Return `key` as bytes if it is exactly 32 bytes (an Ed25519 public key or seed)."""
    if not isinstance(key, (bytes, bytearray)) or len(key) != ED25519_KEY_SIZE:
        raise NoteFormatError(f"{what} must be exactly {ED25519_KEY_SIZE} bytes", field=what)
    return bytes(key)


def split_verifier_key(text: object) -> tuple[str, KeyID, int, bytes]:
    """Split ``name+hexid+base64(type||key)`` into (name, declared key ID, type byte, key bytes).

    Checks only the shape; the caller checks the type byte, key length and that the ID matches.
    """
    if not isinstance(text, str):
        raise NoteFormatError("a verifier key is a string", field="verifier_key")
    name, _, rest = text.partition("+")
    hex_id, _, key64 = rest.partition("+")
    check_key_name(name)
    key_id = KeyID.from_hex(hex_id)
    raw = b64decode_strict(key64, what="key")
    if not raw:
        raise NoteFormatError("key material is empty", field="key")
    return name, key_id, raw[0], raw[1:]


def split_signer_key(text: object) -> tuple[str, KeyID, int, bytes]:
    """Split ``PRIVATE+KEY+name+hexid+base64(type||seed)`` like `split_verifier_key`."""
    if not isinstance(text, str) or not text.startswith(_PRIVATE_PREFIX):
        raise NoteFormatError("a signer key starts with 'PRIVATE+KEY+'", field="signer_key")
    return split_verifier_key(text[len(_PRIVATE_PREFIX):])


def key_type_of(text: object) -> int:
    """The signature type byte of a verifier or signer key string (0x01 note key, 0x04 cosigner)."""
    if isinstance(text, str) and text.startswith(_PRIVATE_PREFIX):
        return split_signer_key(text)[2]
    return split_verifier_key(text)[2]


def format_key_string(name: str, key_id: KeyID, signature_type: int, key: bytes) -> str:
    return f"{name}+{key_id.hex()}+{base64.b64encode(bytes([signature_type]) + key).decode('ascii')}"


def format_signer_key_string(name: str, key_id: KeyID, signature_type: int, seed: bytes) -> str:
    return _PRIVATE_PREFIX + format_key_string(name, key_id, signature_type, seed)


def expect_type(actual: int, expected: int, what: str) -> None:
    if actual != expected:
        raise NoteFormatError(f"{what} has signature type 0x{actual:02x}, expected 0x{expected:02x}",
                              field="key")


def expect_key_id(declared: KeyID, computed: KeyID, what: str) -> None:
    if declared != computed:
        raise NoteFormatError(f"{what} declares key ID {declared.hex()} but its name and key give "
                              f"{computed.hex()}", field="key_id")


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True if `signature` is a valid RFC 8032 Ed25519 signature of `message`; never raises."""
    if not isinstance(signature, (bytes, bytearray)) or len(signature) != ED25519_SIGNATURE_SIZE:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
        return False
    return True


@dataclass(frozen=True)
class _PublicKey:
    """A named Ed25519 public key of one signature type (`SIGNATURE_TYPE`, set by subclasses:
    NoteVerifier here, CosignatureVerifier in cosignature.py); not used on its own.

    Precondition: `name` is a valid key name and `public_key` is 32 bytes; both checked here.
    """

    SIGNATURE_TYPE: ClassVar[int]
    KIND: ClassVar[str]  # how error messages name this kind of key string

    name: str
    public_key: bytes
    key_id: KeyID = field(init=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        object.__setattr__(self, "public_key", check_key_length(self.public_key, "public_key"))
        object.__setattr__(self, "key_id", KeyID.for_key(self.name, self.SIGNATURE_TYPE, self.public_key))

    @classmethod
    def from_text(cls, text: str) -> Self:
        """Parse a verifier key string ``name+hexid+base64(type||pubkey)``; the type and ID must match."""
        name, declared, signature_type, key = split_verifier_key(text)
        expect_type(signature_type, cls.SIGNATURE_TYPE, cls.KIND)
        verifier = cls(name, check_key_length(key, "public_key"))
        expect_key_id(declared, verifier.key_id, cls.KIND)
        return verifier

    def to_text(self) -> str:
        return format_key_string(self.name, self.key_id, self.SIGNATURE_TYPE, self.public_key)


@dataclass(frozen=True)
class NoteVerifier(_PublicKey):
    """Checks Ed25519 (type 0x01) note signatures by one named key."""

    SIGNATURE_TYPE: ClassVar[int] = ALG_ED25519
    KIND: ClassVar[str] = "verifier key"

    def verify(self, text: bytes, signature: bytes) -> None:
        """Raise `SignatureError` unless `signature` is this key's Ed25519 signature of `text`."""
        if not ed25519_verify(self.public_key, text, signature):
            raise SignatureError(f"invalid signature for key {self.name}+{self.key_id.hex()}")


@dataclass(frozen=True)
class NoteSigner:
    """Makes Ed25519 (type 0x01) note signatures. `repr` never shows the private key."""

    name: str
    signing_key: nacl.signing.SigningKey = field(repr=False)
    key_id: KeyID = field(init=False)

    def __post_init__(self) -> None:
        check_key_name(self.name)
        if not isinstance(self.signing_key, nacl.signing.SigningKey):
            raise NoteFormatError("signing_key must be a nacl.signing.SigningKey", field="signing_key")
        public_key = bytes(self.signing_key.verify_key)
        object.__setattr__(self, "key_id", KeyID.for_key(self.name, ALG_ED25519, public_key))

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> NoteSigner:
        return cls(name, nacl.signing.SigningKey(check_key_length(seed, "seed")))

    @classmethod
    def from_text(cls, text: str) -> NoteSigner:
        """Parse Go's signer key string ``PRIVATE+KEY+name+hexid+base64(0x01||seed)``."""
        name, declared, signature_type, seed = split_signer_key(text)
        expect_type(signature_type, ALG_ED25519, "signer key")
        signer = cls.from_seed(name, seed)
        expect_key_id(declared, signer.key_id, "signer key")
        return signer

    def to_text(self) -> str:
        """The secret signer key string; whoever holds it can sign as this key."""
        return format_signer_key_string(self.name, self.key_id, ALG_ED25519, bytes(self.signing_key))

    @property
    def public_key(self) -> bytes:
        return bytes(self.signing_key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of `message`."""
        return self.signing_key.sign(bytes(message)).signature

    def verifier(self) -> NoteVerifier:
        return NoteVerifier(self.name, self.public_key)


def generate_signer(name: str, seed: bytes | None = None) -> NoteSigner:
    """A new Ed25519 note signer; a given 32-byte `seed` makes it deterministic (tests only)."""
    if seed is None:
        return NoteSigner(name, nacl.signing.SigningKey.generate())
    return NoteSigner.from_seed(name, seed)
