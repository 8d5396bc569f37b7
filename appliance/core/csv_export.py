"""CSV exports of one run, for people (docs/FORMAT.md, "CSV exports"), and their detached signature.

The file: UTF-8 with a byte order mark (so spreadsheets read it as UTF-8), RFC 4180 records
ending in CRLF, a header row, one row per entry in run order. A cell that starts with `=`, `+`,
`-`, `@`, a tab or a carriage return gets a leading apostrophe, so a spreadsheet shows it as text
instead of running it as a formula. The detached signature is a signed note by the log key whose
text binds the file's SHA-256 to the origin, the trace, the row count and the checkpoint.
"""

from __future__ import annotations

import base64
import csv
import json
import re
from collections.abc import Sequence

from appliance.core.checkpoint import Checkpoint
from appliance.core.entry import decode_entry, entry_hash
from appliance.core.errors import InvalidInput, RunlogError, VerificationError
from appliance.core.hashing import sha256
from appliance.core.keys import NoteSigner, NoteVerifier
from appliance.core.note import open_note, sign_note
from appliance.core.timefmt import parse_utc

CSV_HEADER = ("seq", "run_seq", "received_at", "ts", "step", "status", "seconds_since_start", "attrs", "entry_hash")
NOTE_HEADER = "runlog-csv/v1"
BOM = "\ufeff"
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NOTE = re.compile(r"runlog-csv/v1\n(?P<origin>[^\n]+)\ntrace (?P<trace>[0-9a-f]{32})\nrows (?P<rows>0|[1-9][0-9]*)\n"
                   r"sha256 (?P<sha>[0-9a-f]{64})\ncheckpoint (?P<size>0|[1-9][0-9]*) (?P<root>[A-Za-z0-9+/=]{44})\n")


class CsvError(VerificationError):
    """A CSV export does not match its detached signature."""


class _Lines:
    """What csv.writer writes to: the text kept in memory (the core does no I/O)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)


def neutralise(cell: str) -> str:
    """The cell as a spreadsheet will show it as text: a leading apostrophe before a formula start."""
    return "'" + cell if cell.startswith(_FORMULA_START) else cell


def build_csv(entries: Sequence[bytes]) -> bytes:
    """The CSV of a run from its entries' canonical bytes, in run order. Precondition: valid entries."""
    out = _Lines()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_HEADER)
    start = None
    for data in entries:
        entry = decode_entry(data)
        received = parse_utc(entry.received_at, field="received_at")
        start = received if start is None else start
        attrs = json.dumps(entry.attrs, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        row = (str(entry.seq), str(entry.run_seq), entry.received_at, entry.ts, entry.step, entry.status,
               f"{(received - start).total_seconds():.6f}", attrs, entry_hash(data).hex())
        writer.writerow([neutralise(cell) for cell in row])
    return (BOM + "".join(out.parts)).encode("utf-8")


def csv_note_text(origin: str, trace_id: str, rows: int, digest: bytes, checkpoint: Checkpoint) -> str:
    root = base64.b64encode(checkpoint.root_hash).decode("ascii")
    return (f"{NOTE_HEADER}\n{origin}\ntrace {trace_id}\nrows {rows}\nsha256 {digest.hex()}\n"
            f"checkpoint {checkpoint.size} {root}\n")


def sign_csv(data: bytes, *, trace_id: str, rows: int, checkpoint: Checkpoint, signer: NoteSigner) -> str:
    """The detached signed note for CSV `data` of `rows` entries proven under `checkpoint`."""
    return sign_note(csv_note_text(signer.name, trace_id, rows, sha256(data), checkpoint), [signer]).decode("utf-8")


def verify_csv(data: bytes, note: bytes | str, key: NoteVerifier) -> dict:
    """Check the note's signature, then the file's SHA-256 and its row count. Returns what the note
    says (origin, trace, rows, checkpoint size and root); raises `CsvError` or `InvalidInput`."""
    if not isinstance(data, (bytes, bytearray, memoryview)):  # bytes(5) would be five zero bytes
        raise InvalidInput(f"a CSV file is bytes, got {type(data).__name__}", field="csv")
    try:
        text = open_note(note, [key]).text
    except VerificationError as error:
        raise CsvError(f"CSV signature: {error}") from None
    match = _NOTE.fullmatch(text)
    if match is None or match["origin"] != key.name:
        raise InvalidInput("CSV signature: the signed note is not a runlog-csv/v1 note of this log", field="signature")
    if sha256(bytes(data)).hex() != match["sha"]:
        raise CsvError("the CSV file was edited: its SHA-256 differs from the signed one (a cell changed, or a row "
                       "was added or dropped)")
    try:
        lines = [line for line in re.split(r"(?<=\n)", bytes(data).decode("utf-8-sig")) if line]
        records = list(csv.reader(lines))
    except (UnicodeDecodeError, csv.Error, RunlogError) as error:  # pragma: no cover - the hash matched
        raise CsvError(f"the signed CSV cannot be read: {error}") from None
    if len(records) - 1 != int(match["rows"]):
        raise CsvError(f"the CSV holds {len(records) - 1} rows, its signature says {match['rows']}")
    return {"origin": match["origin"], "trace_id": match["trace"], "rows": int(match["rows"]),
            "tree_size": int(match["size"]), "root": match["root"]}
