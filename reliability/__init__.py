"""Long reliability runs, one command each (docs/RELIABILITY.md has the figures):

    python -m reliability.soak --minutes 10
    python -m reliability.crash --kills 60
    python -m reliability.disk
    python -m reliability.outage --minutes 3

tests/reliability/ and the crash and outage tests run short versions of the same code in CI.
"""
