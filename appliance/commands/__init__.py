"""Subcommands of `runlog`, one module per command group, each with `register(subparsers)`."""
