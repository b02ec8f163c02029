"""The exceptions a run or a tool ends with, and the one wrapper every command-line tool reports them through.

``BoraError``: bad user input (a value, a path, a missing package); the message names it and the fix, on one
line. It derives from Hydra's ``CompactHydraException`` so that when it escapes a Hydra entry point Hydra prints
only its message (no stack trace) and exits non-zero. Library callers catch it like any ``ValueError``.
``Diverged``: training produced non-finite or exploding numbers. ``Interrupted``: Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from hydra.errors import CompactHydraException

EXIT_USAGE = 2  # bad input: a value, a path, a command line


class BoraError(CompactHydraException, ValueError):
    """A user-facing error: the message names the bad value and the fix, on one line."""


class Diverged(Exception):
    """Training produced non-finite or exploding numbers: the run is failed, never a result."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGUSR2: the run stops (after a checkpoint, when training) and records ``interrupted``."""

    def __init__(self, signum: int, step: int | None = None, message: str | None = None):
        super().__init__(message or signal.Signals(signum).name)
        self.signum = signum
        self.step = step

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM, 140 for SIGUSR2, as a shell reports them


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def run_tool(main: Callable[[], object]) -> None:
    """Run a command-line tool's body: a ``BoraError`` becomes ``error: <one line>`` on stderr and exit code 2; an
    ``Interrupted`` its one line and 130 / 143. Every ``bora`` tool goes through here."""
    try:
        main()
    except BoraError as error:
        fail(str(error))
    except Interrupted as interrupted:
        print(f"interrupted: {interrupted}", file=sys.stderr, flush=True)
        sys.exit(interrupted.exit_code)
