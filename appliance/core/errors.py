"""One error family for everything the core refuses.

Parsers raise `InvalidInput` subclasses; verifiers raise `VerificationError` subclasses. Raw
`ValueError`, `binascii.Error`, `KeyError` or `UnicodeError` never escape a core call.
"""


class RunlogError(Exception):
    """Base of every error runlog raises on purpose."""


class InvalidInput(RunlogError):
    """Input is malformed; the message names the field and what is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TraceContextError(InvalidInput):
    """A traceparent, tracestate or X-Ray trace header is invalid."""


class EntryError(InvalidInput):
    """An entry's fields or canonical bytes break the entry rules."""


class NoteFormatError(InvalidInput):
    """A signed note, checkpoint body or key string is malformed."""


class VerificationError(RunlogError):
    """Evidence did not verify."""


class ProofError(VerificationError):
    """A Merkle proof does not lead to the expected root."""

    def __init__(self, message: str, *, expected: bytes | None = None, computed: bytes | None = None) -> None:
        detail = message
        if expected is not None and computed is not None:
            detail = f"{message}: expected root {expected.hex()}, computed {computed.hex()}"
        super().__init__(detail)
        self.expected = expected
        self.computed = computed


class ChainError(VerificationError):
    """A hash chain is broken; `seq` is the first entry that fails and `reason` says how."""

    def __init__(self, message: str, *, seq: int, reason: str) -> None:
        super().__init__(f"seq {seq}: {reason}: {message}")
        self.seq = seq
        self.reason = reason


class SignatureError(VerificationError):
    """A signature is missing, made by an unknown key, or does not verify."""
