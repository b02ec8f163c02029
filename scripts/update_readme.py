"""Write each study's table, rendered from its committed result files, into the README (`make readme`).

The README holds the rendered Markdown of every study between ``<!-- study:<name> -->`` and ``<!-- /study:<name> -->``;
tests/test_readme_results.py renders the same from results/ and fails when the two differ, so the README's numbers
are always what the committed files give.

    python scripts/update_readme.py [--check]
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from bora.errors import BoraError, run_tool
from bora.paths import PROJECT_ROOT
from bora.record import Unreadable, read_record
from bora.report.aggregate import result_files
from bora.report.committed import COMMITTED, FIGURE_FOLDERS, render_committed

README = PROJECT_ROOT / "README.md"


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- study:{re.escape(name)} -->\n)(.*?)(\n<!-- /study:{re.escape(name)} -->)", re.S)


def readme_block(name: str, text: str) -> str | None:
    match = block_pattern(name).search(text)
    return match.group(2) if match else None


def check_every_result_readable(root: Path) -> None:
    """A committed result.json that cannot be read would silently drop out of its table: name it instead."""
    for path in result_files(root):
        try:
            read_record(path)
        except Unreadable as error:
            shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
            raise BoraError(
                f"{shown} is unreadable ({error.reason}); every committed run enters the README's tables: restore it "
                f"(git checkout -- {shown}) rather than render without it"
            ) from None


def update(check: bool) -> None:
    check_every_result_readable(PROJECT_ROOT / "results")
    text = README.read_text(encoding="utf-8")
    for name in COMMITTED:
        if readme_block(name, text) is None:
            raise BoraError(f"README.md has no <!-- study:{name} --> ... <!-- /study:{name} --> block")
        fresh = render_committed(name, write_figures=not check)
        if check and readme_block(name, text) != fresh:
            raise BoraError(f"README.md's {name} table differs from results/; run `make readme`")
        text = block_pattern(name).sub(lambda m, fresh=fresh: m.group(1) + fresh + m.group(3), text)
    if not check:
        README.write_text(text, encoding="utf-8")
        print(
            f"README.md: {', '.join(COMMITTED)} tables written from results/; figures into {', '.join(FIGURE_FOLDERS)}/"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 2 when the README is out of date")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    run_tool(lambda: update(args.check))


if __name__ == "__main__":
    main()
