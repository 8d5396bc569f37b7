"""Correlation IDs: W3C Trace Context headers and the AWS X-Ray trace header.

A run's ID is a W3C trace-id: 32 lower-case hex digits, never all zeros. This module parses and
writes `traceparent` and `tracestate`, and converts an AWS X-Ray `X-Amzn-Trace-Id` Root to the
same trace-id. Every invalid input raises `TraceContextError` naming the header and the fault.

Sources: W3C Trace Context Level 1 Recommendation (https://www.w3.org/TR/trace-context-1/) and
Level 2 (https://www.w3.org/TR/trace-context-2/); section numbers below are Level 2's, which are
Level 1's for `traceparent`. Where the two differ, the rules are those the official test suite
enforces (https://github.com/w3c/trace-context/blob/main/test/test.py, named `test.py` below).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from appliance.core.errors import TraceContextError

SAMPLED_FLAG = 0x01
MAX_TRACESTATE_MEMBERS = 32

_TRACEPARENT_V00_LENGTH = 55
_OWS = " \t"  # RFC 9110 section 5.6.3: OWS is spaces and horizontal tabs only
_LOWER_HEX = frozenset("0123456789abcdef")
_MAX_RANDOM_DRAWS = 8

# test.py Tracestate._KEY_WITHOUT_VENDOR_FORMAT / _KEY_WITH_VENDOR_FORMAT / _VALUE_FORMAT.
_SIMPLE_KEY = re.compile(r"[a-z][a-z0-9_\-*/]{0,255}")
_MULTI_TENANT_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}")
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")

_XRAY_HEADER = "X-Amzn-Trace-Id"
_XRAY_ROOT = re.compile(r"1-([0-9a-fA-F]{8})-([0-9a-fA-F]{24})")
_XRAY_PARENT = re.compile(r"[0-9a-fA-F]{16}")


def _show(text: str) -> str:
    """A short, printable rendering of untrusted input for an error message."""
    return repr(text if len(text) <= 64 else text[:64] + "...")


def _require_text(value: object, header: str) -> str:
    if not isinstance(value, str):
        raise TraceContextError(f"{header} must be text, got {type(value).__name__}", field=header)
    return value


def _require_values(values: object, header: str) -> list[str]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TraceContextError(f"{header} values must be a list of header values", field=header)
    return [_require_text(value, header) for value in values]


def _is_lower_hex(text: str, length: int) -> bool:
    # Set membership, not int(text, 16): int() also accepts "+", "_", spaces and non-ASCII digits.
    return len(text) == length and all(char in _LOWER_HEX for char in text)


def _check_id(value: object, length: int, label: str, field: str) -> str:
    """`value` if it is `length` lower-case hex digits, not all zeros; `label` names it in errors."""
    if not isinstance(value, str) or not _is_lower_hex(value, length):
        shown = _show(value) if isinstance(value, str) else type(value).__name__
        raise TraceContextError(f"{label} must be {length} lower-case hex digits, got {shown}", field=field)
    if value == "0" * length:
        raise TraceContextError(f"{label} is all zeros", field=field)
    return value


@dataclass(frozen=True)
class TraceParent:
    """One `traceparent` value (spec section 3.2).

    `version` is the version of the header it was read from (0 for those made here). `to_header`
    always writes version 00: section 3.2.4 says vendors "MUST use these fields to construct the
    new traceparent field according to the highest version of the specification known".
    """

    version: int
    trace_id: str
    parent_id: str
    flags: int

    def __post_init__(self) -> None:
        if type(self.version) is not int or not 0 <= self.version <= 0xFE:
            raise TraceContextError("traceparent version must be an integer 0..254", field="traceparent")
        _check_id(self.trace_id, 32, "traceparent trace-id", "traceparent")
        _check_id(self.parent_id, 16, "traceparent parent-id", "traceparent")
        if type(self.flags) is not int or not 0 <= self.flags <= 0xFF:
            raise TraceContextError("traceparent trace-flags must be an integer 0..255", field="traceparent")

    @property
    def sampled(self) -> bool:
        return bool(self.flags & SAMPLED_FLAG)

    @classmethod
    def from_header(cls, value: str) -> TraceParent:
        """Parse one `traceparent` header value; leading and trailing spaces and tabs are ignored.

        Version 00 must be exactly 55 characters. A higher version must be at least 55 characters
        and anything after the flags must start with "-"; only its version-00 fields are read and,
        of its flags, only the sampled bit (section 4.1.2: "Vendors will set all unparsed /
        unknown trace-flags to 0").
        """
        text = _require_text(value, "traceparent").strip(_OWS)
        if not text:
            raise TraceContextError("traceparent is empty", field="traceparent")
        version_text = text[:2]
        if not _is_lower_hex(version_text, 2) or text[2:3] != "-":
            raise TraceContextError(
                f"traceparent must start with a 2 lower-case hex digit version and '-', got {_show(text)}",
                field="traceparent",
            )
        if version_text == "ff":
            raise TraceContextError("traceparent version ff is forbidden", field="traceparent")
        version = int(version_text, 16)
        if version == 0 and len(text) != _TRACEPARENT_V00_LENGTH:
            raise TraceContextError(
                f"traceparent version 00 must be exactly 55 characters, got {len(text)}", field="traceparent"
            )
        if len(text) < _TRACEPARENT_V00_LENGTH:
            raise TraceContextError(
                f"traceparent version {version_text} must be at least 55 characters, got {len(text)}",
                field="traceparent",
            )
        if text[35] != "-" or text[52] != "-":
            raise TraceContextError(
                "traceparent fields must be version-trace-id-parent-id-trace-flags separated by '-' "
                f"(32 and 16 hex digits), got {_show(text)}",
                field="traceparent",
            )
        if len(text) > _TRACEPARENT_V00_LENGTH and text[55] != "-":
            raise TraceContextError(
                f"traceparent version {version_text}: what follows the trace-flags must start with '-'",
                field="traceparent",
            )
        flags_text = text[53:55]
        if not _is_lower_hex(flags_text, 2):
            raise TraceContextError(
                f"traceparent trace-flags must be 2 lower-case hex digits, got {_show(flags_text)}",
                field="traceparent",
            )
        flags = int(flags_text, 16)
        if version != 0:
            flags &= SAMPLED_FLAG
        return cls(version=version, trace_id=text[3:35], parent_id=text[36:52], flags=flags)

    def to_header(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags:02x}"


def parse_traceparent_headers(values: Sequence[str]) -> TraceParent | None:
    """The request's trace parent, given every `traceparent` field line it carried.

    Returns None, meaning "start (or restart) the trace", when there is none or more than one:
    test.py `test_traceparent_duplicated` requires a new trace-id for two headers, because
    `traceparent` is not a list-valued field (RFC 9110 section 5.3) and an invalid traceparent
    means the vendor "creates a new traceparent header and deletes tracestate" (section 4.1.2).
    A comma can only come from a server having joined several field lines, so it counts too.
    A single invalid value raises `TraceContextError`: per spec a tracing participant treats that
    as None as well, but the caller may prefer to reject the request.
    """
    parts = [part for value in _require_values(values, "traceparent") for part in value.split(",")]
    if len(parts) != 1:
        return None
    return TraceParent.from_header(parts[0])


def _random_hex(size: int, rand: Callable[[int], bytes]) -> str:
    for _ in range(_MAX_RANDOM_DRAWS):
        raw = rand(size)
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != size:
            raise TraceContextError(f"random source must return {size} bytes", field="rand")
        if any(raw):
            return bytes(raw).hex()
    raise TraceContextError(
        f"random source returned all-zero {size}-byte IDs {_MAX_RANDOM_DRAWS} times", field="rand"
    )


def generate_trace_id(rand: Callable[[int], bytes] = os.urandom) -> str:
    """A random trace-id (16 bytes from `rand`, as hex), never all zeros."""
    return _random_hex(16, rand)


def generate_parent_id(rand: Callable[[int], bytes] = os.urandom) -> str:
    """A random parent-id (8 bytes from `rand`, as hex), never all zeros."""
    return _random_hex(8, rand)


def new_traceparent(
    trace_id: str | None = None, rand: Callable[[int], bytes] = os.urandom, *, sampled: bool = True
) -> TraceParent:
    """A version-00 traceparent with a fresh parent-id, in `trace_id` or in a new trace.

    Only the sampled flag is ever set: Level 1 defines no other (its other flags "MUST" be zero),
    so Level 2's random-trace-id flag is not used. `sampled` defaults to True because the
    appliance records every event it accepts.
    """
    return TraceParent(
        version=0,
        trace_id=generate_trace_id(rand) if trace_id is None else trace_id,
        parent_id=generate_parent_id(rand),
        flags=SAMPLED_FLAG if sampled else 0,
    )


def _check_member(key: str, value: str) -> None:
    if not (_SIMPLE_KEY.fullmatch(key) or _MULTI_TENANT_KEY.fullmatch(key)):
        raise TraceContextError(
            f"tracestate key {_show(key)} is not a key: lower-case letter then up to 255 of "
            "a-z 0-9 _ - * /, or tenant@system (1-241 and 1-14 characters)",
            field="tracestate",
        )
    if not _VALUE.fullmatch(value):
        raise TraceContextError(
            f"tracestate value for {key!r} must be 1-256 printable ASCII characters other than "
            f"',' and '=', not ending in a space, got {_show(value)}",
            field="tracestate",
        )


def _check_members(members: list[tuple[str, str]]) -> None:
    seen: set[str] = set()
    for key, value in members:
        _check_member(key, value)
        if key in seen:
            raise TraceContextError(f"tracestate key {key!r} appears more than once", field="tracestate")
        seen.add(key)
    if len(members) > MAX_TRACESTATE_MEMBERS:
        raise TraceContextError(
            f"tracestate has {len(members)} list-members, at most 32 are allowed", field="tracestate"
        )


def parse_tracestate(values: Sequence[str]) -> list[tuple[str, str]]:
    """The (key, value) list-members of every `tracestate` field line, combined in order.

    Empty and whitespace-only list-members are skipped (section 3.3.2). Any fault raises
    `TraceContextError`; the caller then discards the whole tracestate and keeps the
    traceparent (section 3.3: failure to parse tracestate "MUST NOT affect the parsing of
    traceparent"; test.py expects an invalid tracestate to be discarded). Callers parse
    tracestate only after a valid traceparent (section 3.3 and 4.1.1).
    """
    members: list[tuple[str, str]] = []
    for raw in ",".join(_require_values(values, "tracestate")).split(","):
        member = raw.strip(_OWS)
        if not member:
            continue
        key, equals, value = member.partition("=")
        if not equals:
            raise TraceContextError(f"tracestate list-member {_show(member)} has no '='", field="tracestate")
        members.append((key, value))
        if len(members) > MAX_TRACESTATE_MEMBERS:
            break  # stop early on hostile input; _check_members reports the count
    _check_members(members)
    return members


def format_tracestate(members: Sequence[tuple[str, str]]) -> str:
    """The `tracestate` header value for `members`, in order; "" for none (then send no header)."""
    if isinstance(members, (str, bytes)) or not isinstance(members, Sequence):
        raise TraceContextError("tracestate members must be a list of pairs", field="tracestate")
    checked: list[tuple[str, str]] = []
    for member in members:
        pair = isinstance(member, (tuple, list)) and len(member) == 2
        if not (pair and isinstance(member[0], str) and isinstance(member[1], str)):
            raise TraceContextError("tracestate members must be (key, value) string pairs", field="tracestate")
        checked.append((member[0], member[1]))
    _check_members(checked)
    return ",".join(f"{key}={value}" for key, value in checked)


def _parse_xray(header_value: str) -> tuple[str, str | None]:
    """(W3C trace-id, W3C parent-id or None) from an `X-Amzn-Trace-Id` value.

    Fields are `Key=Value` separated by ";", in any order, with spaces and tabs allowed around
    keys and values; only Root and Parent are read (Sampled may be "?", and AWS adds Self and
    Lineage).
    """
    text = _require_text(header_value, _XRAY_HEADER)
    fields: dict[str, str] = {}
    for raw in text.split(";"):
        part = raw.strip(_OWS)
        if not part:
            continue
        key, equals, value = part.partition("=")
        if not equals:
            raise TraceContextError(f"{_XRAY_HEADER} field {_show(part)} has no '='", field=_XRAY_HEADER)
        key, value = key.strip(_OWS), value.strip(_OWS)
        if key in fields and key in ("Root", "Parent"):
            raise TraceContextError(f"{_XRAY_HEADER} has more than one {key} field", field=_XRAY_HEADER)
        fields[key] = value
    if "Root" not in fields:
        raise TraceContextError(f"{_XRAY_HEADER} has no Root field", field=_XRAY_HEADER)
    root = _XRAY_ROOT.fullmatch(fields["Root"])
    if root is None:
        raise TraceContextError(
            f"{_XRAY_HEADER} Root must be 1-<8 hex digits>-<24 hex digits>, got {_show(fields['Root'])}",
            field=_XRAY_HEADER,
        )
    trace_id = _check_id((root[1] + root[2]).lower(), 32, f"{_XRAY_HEADER} Root", _XRAY_HEADER)
    if "Parent" not in fields:
        return trace_id, None
    if not _XRAY_PARENT.fullmatch(fields["Parent"]):
        raise TraceContextError(
            f"{_XRAY_HEADER} Parent must be 16 hex digits, got {_show(fields['Parent'])}", field=_XRAY_HEADER
        )
    return trace_id, _check_id(fields["Parent"].lower(), 16, f"{_XRAY_HEADER} Parent", _XRAY_HEADER)


def trace_id_from_xray(header_value: str) -> str:
    """The W3C trace-id of an `X-Amzn-Trace-Id` header: Root's 8 + 24 hex digits, lower-cased.

    This is the mapping of the OpenTelemetry AWS X-Ray propagator (opentelemetry-python-contrib,
    propagator/opentelemetry-propagator-aws-xray, `AwsXRayPropagator._parse_trace_id`).
    """
    return _parse_xray(header_value)[0]


def xray_parent_id(header_value: str) -> str | None:
    """The header's Parent as a W3C parent-id, or None when it has none; Root must be valid too."""
    return _parse_xray(header_value)[1]


def xray_root_from_trace_id(trace_id: str) -> str:
    """The X-Ray Root for a W3C trace-id: `1-` + first 8 hex digits + `-` + last 24."""
    _check_id(trace_id, 32, "trace-id", "trace_id")
    return f"1-{trace_id[:8]}-{trace_id[8:]}"
