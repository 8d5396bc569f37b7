"""Several HTTP worker processes around one primary that owns the writer (RUNLOG_WORKERS > 1):
the supervisor, the link between them, and the stand-ins a worker holds for the primary's parts."""
