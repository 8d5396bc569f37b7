"""A bundle's entries, checked one by one (bytes, tlog-proof, inclusion proof) and then as a chain.

`examine_entries` does the per-entry work for a slice of the entries; it depends on nothing but the
slice, so slices can be checked apart (in worker processes, say) and their results put back in
order. `follow_run_chain` then follows the run's chain through them and raises the error that checking
the entries one after another would have raised first: a chain break before the first failing
entry, else that entry's own failure.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from appliance.core.chain import RunChains
from appliance.core.entry import decode_entry
from appliance.core.entry_fast import EntryFacts, entry_facts
from appliance.core.errors import ChainError, InvalidInput, RunlogError, VerificationError
from appliance.core.hashing import leaf_hash, sha256
from appliance.core.proof_memo import ProofMemo
from appliance.core.proof_verify import verify_inclusion
from appliance.core.tlog_proof import TlogProof


class BundleFormatError(InvalidInput):
    """The file is not a well-formed evidence bundle."""


class BundleError(VerificationError):
    """The bundle is well formed but some evidence in it does not hold."""


class Link(NamedTuple):
    """What the run's chain needs of one checked entry (the fields `RunChains.add` reads)."""

    seq: int
    trace_id: str
    run_seq: int
    run_prev: bytes | None
    final: bool
    digest: bytes


class EntriesContext(NamedTuple):
    """What every entry is checked against: the bundle's trace and signed checkpoint (its note text,
    tree size and root, the signatures already verified)."""

    items: list
    trace_id: str
    note: str
    size: int
    root: bytes


class Failure(NamedTuple):
    """The first failing entry of a slice, as plain values (so it can cross a process boundary)."""

    number: int
    format_error: bool  # BundleFormatError (the file is not a bundle) rather than BundleError
    message: str
    field: str | None

    def error(self) -> RunlogError:
        if self.format_error:
            return BundleFormatError(self.message, field=self.field)
        return BundleError(self.message)


def _get(item: Any, key: str, where: str) -> str:
    if not isinstance(item, dict) or key not in item:
        raise BundleFormatError(f"{where} has no {key!r} member", field=key)
    value = item[key]
    if not isinstance(value, str):
        raise BundleFormatError(f"{where}.{key} must be a str", field=key)
    return value


def examine_entries(context: EntriesContext, start: int, stop: int) -> tuple[list[Link], Failure | None]:
    """Check entries[start:stop] each on its own, in order, until one fails: the links of those
    that held, and the failure (None when all held)."""
    items = context.items
    proofs = ProofMemo(context.note, context.size, context.root)
    links: list[Link] = []
    for number in range(start, stop):
        try:
            links.append(_check_entry(number, items[number], context, proofs))
        except BundleFormatError as error:
            return links, Failure(number, True, str(error), error.field)
        except BundleError as error:
            return links, Failure(number, False, str(error), None)
    return links, None


def _check_entry(number: int, item: Any, context: EntriesContext, proofs: ProofMemo) -> Link:
    where = f"entries[{number}]"
    text = _get(item, "entry", where)
    entry = entry_facts(text)  # the common case, fast; else decode_entry, which says what is wrong
    if entry is None:
        raw = text.encode("utf-8", "surrogatepass")
        try:
            decoded = decode_entry(raw)
        except InvalidInput as error:
            raise BundleError(f"{where}: the entry bytes were altered or are not a valid entry: {error}") from None
        entry = EntryFacts(decoded.seq, decoded.trace_id, decoded.run_seq, decoded.run_prev, decoded.final, raw)
    if entry.trace_id != context.trace_id:
        raise BundleError(f"{where} (seq {entry.seq}): belongs to trace {entry.trace_id}, not {context.trace_id}: "
                          "an entry of another run was inserted")
    leaf = leaf_hash(entry.data)
    if not proofs.holds(item.get("proof"), entry.seq, leaf):  # the common case, fast; else in full, saying why
        _check_proof(where, item, entry.seq, leaf, context)
    return Link(entry.seq, entry.trace_id, entry.run_seq, entry.run_prev, entry.final, sha256(entry.data))


def _check_proof(where: str, item: dict, seq: int, leaf: bytes, context: EntriesContext) -> None:
    try:
        proof = TlogProof.from_text(_get(item, "proof", where))
    except InvalidInput as error:
        raise BundleFormatError(f"{where}: {error}", field="proof") from None
    if proof.checkpoint != context.note:
        raise BundleError(f"{where} (seq {seq}): its tlog-proof names another checkpoint than the bundle's")
    if proof.index != seq:
        raise BundleError(f"{where}: its tlog-proof is for index {proof.index}, the entry says seq {seq}")
    try:
        verify_inclusion(seq, context.size, leaf, list(proof.hashes), context.root)
    except VerificationError as error:
        raise BundleError(f"{where} (seq {seq}): the entry is not in the signed tree: {error}") from None


def follow_run_chain(links: list[Link], failure: Failure | None) -> RunChains:
    """Follow the run's chain through the links of entries 0..n-1 (all that held, in order) and
    raise what a one-by-one check would have raised first; `failure` is entry n's, if any."""
    chains = RunChains()
    for number, link in enumerate(links):
        try:
            chains.add(link, link.digest)  # type: ignore[arg-type]  # a Link has the fields add reads
        except ChainError as error:
            raise BundleError(f"entries[{number}] (seq {link.seq}): the run's chain is broken ({error.reason}): "
                              f"{error}") from None
    if failure is not None:
        raise failure.error()
    return chains
