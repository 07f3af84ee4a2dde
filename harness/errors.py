"""One root for every error the harness raises on purpose, so callers (CLI, conftest) can tell our failures,
which carry a message meant for people, from bugs."""

from __future__ import annotations

__all__ = ["CommandError", "HarnessError", "SetupError", "TopologyError", "UsageError"]


class HarnessError(Exception):
    """Something the harness could not do; the message says what, on what, why, and what to do."""


class UsageError(HarnessError):
    """Bad input from the person running the harness (an option, an argument)."""


class TopologyError(UsageError):
    """A topology file that does not describe a valid topology; the message names the file and field."""


class SetupError(HarnessError):
    """The machine lacks something a run needs (a binary, a free port, an address that cannot be bound)."""


class CommandError(HarnessError):
    """An external command failed; the message shows its command line and output."""

    def __init__(self, argv: list[str], returncode: int, output: str, doing: str) -> None:
        self.argv = argv
        self.returncode = returncode
        self.output = output
        shown = output.strip()
        if len(shown) > 4000:
            shown = "…" + shown[-4000:]
        super().__init__(f"{doing} failed: `{' '.join(argv)}` exited {returncode}" + (f":\n{shown}" if shown else ""))
