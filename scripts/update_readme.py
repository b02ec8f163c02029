"""Write each study's tables, rendered from its committed result files, into the pages that show them (`make readme`).

A page (README.md, or a docs page under docs/) holds the rendered Markdown of a study between
``<!-- study:<name> -->`` and ``<!-- /study:<name> -->``; this writes every such block of every page, and every study
must have at least one. tests/test_readme_results.py renders the same from results/ and fails when a page differs, so
the numbers shown are always what the committed files give. Figure links are written relative to the page: from the
repository root in README.md, from the docs root in docs/ (docs/hooks.py puts results/*/figures/ into the site).

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
DOCS = PROJECT_ROOT / "docs"


def pages() -> list[Path]:
    """Every page that may hold a study block: README.md and the docs pages."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- study:{re.escape(name)} -->\n)(.*?)(\n<!-- /study:{re.escape(name)} -->)", re.S)


def readme_block(name: str, text: str) -> str | None:
    """The text of study ``name``'s block in a page's ``text`` (None where the page has none)."""
    match = block_pattern(name).search(text)
    return match.group(2) if match else None


def for_page(rendered: str, page: Path) -> str:
    """A study's rendered Markdown as ``page`` shows it: its links to results/ (the figures) made relative to the
    page, with the docs root standing for the repository root in docs/ (where the site serves results/)."""
    root = DOCS if page.is_relative_to(DOCS) else PROJECT_ROOT
    up = "../" * len(page.parent.relative_to(root).parts)
    return rendered.replace("](results/", f"]({up}results/")


def holders(name: str) -> list[Path]:
    """The pages that hold study ``name``'s block."""
    return [page for page in pages() if readme_block(name, page.read_text(encoding="utf-8")) is not None]


def check_every_result_readable(root: Path) -> None:
    """A committed result.json that cannot be read would silently drop out of its table: name it instead."""
    for path in result_files(root):
        try:
            read_record(path)
        except Unreadable as error:
            shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path
            raise BoraError(
                f"{shown} is unreadable ({error.reason}); every committed run enters the study tables: restore it "
                f"(git checkout -- {shown}) rather than render without it"
            ) from None


def update(check: bool) -> None:
    check_every_result_readable(PROJECT_ROOT / "results")
    texts = {page: page.read_text(encoding="utf-8") for page in pages()}
    for name in COMMITTED:
        holding = [page for page, text in texts.items() if readme_block(name, text) is not None]
        if not holding:
            raise BoraError(
                f"no page holds a <!-- study:{name} --> ... <!-- /study:{name} --> block (README.md, docs/**/*.md)"
            )
        fresh = render_committed(name, write_figures=not check)
        for page in holding:
            shown = for_page(fresh, page)
            if check and readme_block(name, texts[page]) != shown:
                raise BoraError(
                    f"{page.relative_to(PROJECT_ROOT)}'s {name} table differs from results/; run `make readme`"
                )
            texts[page] = block_pattern(name).sub(lambda m, shown=shown: m.group(1) + shown + m.group(3), texts[page])
    if not check:
        for page, text in texts.items():
            if text != page.read_text(encoding="utf-8"):
                page.write_text(text, encoding="utf-8")
        print(
            f"{', '.join(COMMITTED)} tables written from results/ into their pages; "
            f"figures into {', '.join(FIGURE_FOLDERS)}/"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 2 when a page is out of date")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    run_tool(lambda: update(args.check))


if __name__ == "__main__":
    main()
