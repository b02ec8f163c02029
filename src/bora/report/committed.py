"""The committed CPU-scale studies (``results/<study>/``), rendered from their result files as their pages show them.

One renderer for both places that show them: ``scripts/update_readme.py`` writes each between its page markers (and
a test renders it again and compares), and ``notebooks/tables.ipynb`` displays it. Nothing here reads ``outputs/``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bora.paths import PROJECT_ROOT
from bora.report.ablations import FIGURE_DIR
from bora.report.ablations import NAME as ABLATIONS
from bora.report.ablations_page import render_ablations
from bora.report.aggregate import load_results
from bora.report.generation import GENERATION_STUDIES, render_generation_study
from bora.report.generation_figures import render_generation_figures
from bora.report.selection import SELECTIONS, render_selection
from bora.report.study import STUDIES, render_study

# each study's tables (a generation study's with its untrained run: bora.report.generation), and the selection runs
# that chose a protocol
COMMITTED = [*STUDIES, ABLATIONS, *SELECTIONS]
# where render_committed(..., write_figures=True) writes figures (relative to the repository root)
FIGURE_FOLDERS = [FIGURE_DIR, *(study.figures for study in GENERATION_STUDIES.values())]


def render_committed(name: str, write_figures: bool = False) -> str:
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
