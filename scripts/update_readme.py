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
import tempfile
from pathlib import Path

from bora.errors import BoraError, run_tool
from bora.paths import PROJECT_ROOT
from bora.report.ablations import FIGURE_DIR
from bora.report.ablations import NAME as ABLATIONS
from bora.report.ablations_page import render_ablations
from bora.report.aggregate import load_results
from bora.report.generation import GENERATION_STUDIES, render_generation_study
from bora.report.generation_figures import render_generation_figures
from bora.report.selection import SELECTIONS, render_selection
from bora.report.study import STUDIES, render_study

README = PROJECT_ROOT / "README.md"
# each study's tables (a generation study's with its untrained run: bora.report.generation), and the selection runs
# that chose a protocol
BLOCKS = [*STUDIES, ABLATIONS, *SELECTIONS]


def block_pattern(name: str) -> re.Pattern:
    return re.compile(rf"(<!-- study:{re.escape(name)} -->\n)(.*?)(\n<!-- /study:{re.escape(name)} -->)", re.S)


def rendered(name: str, write_figures: bool = False) -> str:
    """The study's (or selection's) Markdown from its committed results. Nothing is written into the checkout unless
    ``write_figures``: then the figures of the ablation and generation studies (PNG and the plotted numbers as CSV)
    go into their committed folders."""
    if name in SELECTIONS:
        return render_selection(name)
    if name == ABLATIONS:
        with tempfile.TemporaryDirectory() as scratch:
            figure_dir = PROJECT_ROOT / FIGURE_DIR if write_figures else Path(scratch) / "figures"
            return render_ablations(PROJECT_ROOT / "results", Path(scratch), figure_dir)[0]
    study = STUDIES[name]
    generation = GENERATION_STUDIES.get(name)
    experiments = [study.experiment_name, *([generation.untrained] if generation else [])]
    runs = load_results(PROJECT_ROOT / study.results, experiments)
    if generation and write_figures:
        render_generation_figures(generation, runs, PROJECT_ROOT / generation.figures)
    render = render_generation_study if generation else render_study
    with tempfile.TemporaryDirectory() as scratch:
        return render(name, runs, Path(scratch), PROJECT_ROOT / study.results)[0]


def readme_block(name: str, text: str) -> str | None:
    match = block_pattern(name).search(text)
    return match.group(2) if match else None


def update(check: bool) -> None:
    text = README.read_text(encoding="utf-8")
    for name in BLOCKS:
        if readme_block(name, text) is None:
            raise BoraError(f"README.md has no <!-- study:{name} --> ... <!-- /study:{name} --> block")
        fresh = rendered(name, write_figures=not check)
        if check and readme_block(name, text) != fresh:
            raise BoraError(f"README.md's {name} table differs from results/; run `make readme`")
        text = block_pattern(name).sub(lambda m: m.group(1) + fresh + m.group(3), text)
    if not check:
        README.write_text(text, encoding="utf-8")
        figures = [FIGURE_DIR, *(study.figures for study in GENERATION_STUDIES.values())]
        print(f"README.md: {', '.join(BLOCKS)} tables written from results/; figures into {', '.join(figures)}/")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 2 when the README is out of date")
    args = parser.parse_args(argv if argv is not None else sys.argv[1:])
    run_tool(lambda: update(args.check))


if __name__ == "__main__":
    main()
