"""Fuzzing: the HTTP API against its own OpenAPI document, and hypothesis on the parsers at the
web edge. CI runs a bounded number of examples; `python -m reliability.fuzz` runs many more by
setting RUNLOG_FUZZ_EXAMPLES (see `examples`)."""

import os


def examples(ci_default: int) -> int:
    """Hypothesis examples per test: `ci_default`, or RUNLOG_FUZZ_EXAMPLES when set."""
    text = os.environ.get("RUNLOG_FUZZ_EXAMPLES", "")
    return int(text) if text.isdigit() and int(text) > 0 else ci_default
