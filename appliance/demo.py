"""A short, self-contained demonstration of the evidence core: log one run, sign a checkpoint,
and verify an inclusion proof and a consistency proof against it, printing each artefact."""

import time
from collections.abc import Callable
from datetime import datetime, timezone

from appliance.core.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from appliance.core.cosignature import generate_cosigner
from appliance.core.keys import generate_signer
from appliance.core.proof_plan import consistency_proof, inclusion_proof
from appliance.core.proof_verify import verify_consistency, verify_inclusion
from appliance.core.sequencer import Event, Sequencer
from appliance.core.timefmt import format_utc
from appliance.core.tracecontext import new_traceparent
from appliance.core.tree import root_from_leaf_hashes

ORIGIN = "runlog.demo/log"
STEPS = [("checkout", "succeeded"), ("build", "succeeded"), ("test", "succeeded"), ("deploy", "succeeded")]


def run_demo(say: Callable[[str], None] = print) -> None:
    signer, clock = generate_signer(ORIGIN), generate_cosigner("runlog.demo/clock")
    run = new_traceparent()
    now = format_utc(datetime.now(timezone.utc))
    events = [
        Event(trace_id=run.trace_id, step=step, status=status, ts=now, source="demo",
              attrs={"n": i}, final=(i == len(STEPS) - 1))
        for i, (step, status) in enumerate(STEPS)
    ]
    sequencer = Sequencer(lambda trace_id: None)
    appended, _ = sequencer.extend(events, now)
    leaves = [a.leaf_hash for a in appended]
    say(f"run {run.trace_id}: {len(appended)} entries; traceparent {run.to_header()}")
    say(f"entry 0 bytes:  {appended[0].data.decode()}")
    say(f"entry 0 sha256: {appended[0].entry_hash.hex()}")

    checkpoint = Checkpoint(ORIGIN, sequencer.size, sequencer.root())
    note = sign_checkpoint(checkpoint, signer, [clock], timestamp=int(time.time()))
    say(f"\nlog key:   {signer.verifier().to_text()}\nclock key: {clock.verifier().to_text()}")
    say("signed checkpoint:\n" + note.decode())
    opened = open_checkpoint(note, signer.verifier(), origin=ORIGIN, cosigner_verifiers=[clock.verifier()])
    say(f"checkpoint signature verified; cut at {opened.cosignatures[0].timestamp} (cosignature/v1)")

    def read(node):
        return root_from_leaf_hashes(leaves[node.begin : node.end])

    proof = inclusion_proof(2, checkpoint.size, read)
    verify_inclusion(2, checkpoint.size, leaves[2], proof, opened.checkpoint.root_hash)
    say(f"inclusion proof for entry 2 ({len(proof)} hashes) verified against the signed root")
    proof = consistency_proof(2, checkpoint.size, read)
    verify_consistency(2, checkpoint.size, proof, root_from_leaf_hashes(leaves[:2]), opened.checkpoint.root_hash)
    say(f"consistency proof from size 2 to {checkpoint.size} ({len(proof)} hashes) verified")
