"""runlog: a self-hosted appliance that turns automation runs into verifiable evidence."""

__version__ = "0.1.0"
