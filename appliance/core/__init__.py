"""The evidence core: pure functions over bytes, no I/O, no clock reads.

Imports only the standard library, pynacl and rfc8785, so the offline verifier can load it alone.
"""
