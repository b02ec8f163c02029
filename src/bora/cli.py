"""``bora <tool> [args]``: the installed command, the same as ``python -m bora.<tool> [args]``."""

from __future__ import annotations

import sys

TOOLS = ["train", "params", "plan", "score", "tables", "power", "export", "bench"]


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TOOLS:
        print(f"usage: bora {{{','.join(TOOLS)}}} [hydra overrides or tool options]", file=sys.stderr)
        sys.exit(2)
    tool = sys.argv.pop(1)
    module = __import__(f"bora.{tool}", fromlist=["main"])
    module.main()


if __name__ == "__main__":
    main()
