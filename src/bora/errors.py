"""The one exception type for bad user input.

It derives from Hydra's ``CompactHydraException`` so that when it escapes a Hydra entry point Hydra prints only
its one-line message (no stack trace) and exits non-zero. Library callers catch it like any ``ValueError``.
"""

from hydra.errors import CompactHydraException


class BoraError(CompactHydraException, ValueError):
    """A user-facing error: the message names the bad value and the fix, on one line."""
