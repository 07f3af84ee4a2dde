"""The ``harness`` console script: the harness's own Ctrl-C and SIGTERM handling (`harness.interrupts`) from its
first line, before the command line interface and everything it imports are loaded, to its last."""

from __future__ import annotations

import sys

from harness import interrupts

__all__ = ["main"]


def main() -> None:
    interrupts.install()
    try:
        from harness.cli import main as cli_main
    except KeyboardInterrupt as exc:  # while starting: nothing was started yet
        print(interrupts.interrupted_line(exc), file=sys.stderr, flush=True)
        sys.exit(interrupts.exit_code(exc))
    code = cli_main()
    interrupts.finished()
    sys.exit(code)


if __name__ == "__main__":
    main()
