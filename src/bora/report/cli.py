"""``bora tables`` / ``python -m bora.tables``: the paper's tables, figures and claims from result files.

``python -m bora.tables``                    every table, figure and the claims check into ``<outputs>/tables/``
``python -m bora.tables --table table2``     one of them (table1-9, figure3b, figure4, claims), printed as well
``python -m bora.tables --experiment smoke`` the summary of one experiment's runs (every metric, mean ± std)
``python -m bora.tables --problems``         the runs that did not succeed, with their one-line error

Only runs that a table's experiment plans enter it; the others found in its folders are listed under it with the
reason. Runs launched with extra overrides (``trainer.grad_accum=2``) enter when the same overrides are passed here:
``python -m bora.tables --table table2 trainer.grad_accum=2``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pandas as pd

from bora.errors import BoraError, run_tool
from bora.paths import unwritable_folder
from bora.report import render
from bora.report.aggregate import load_results, problems, status_counts, summarize
from bora.report.specs import PAPER_TABLES
from bora.report.tables import excluded_runs, member_configs, paper_comparison, table_spec

FIGURES = ["figure3b", "figure4"]
STUDIES = ["cpu-glue", "cpu-commonsense"]  # bora.report.study.STUDIES (named here: --help does not import scipy)
GENERATION_STUDIES = ["cpu-commonsense"]  # bora.report.generation renders these
ABLATIONS = "cpu-ablations"  # bora.report.ablations: Table 9 / 7, Figures 3(b) / 4 at CPU scale


def render_paper_table(
    name: str, runs: pd.DataFrame, out_dir: Path, overrides=(), root: Path | None = None
) -> tuple[str, list[Path]]:
    """One paper table into ``out_dir`` (md, tex, csv); ``root``: the outputs folder (run paths are shown from it)."""
    spec = table_spec(name)
    frame = paper_comparison(name, runs, overrides)
    decoding = render.decoding_line(member_configs(name, runs, overrides))
    markdown = render.comparison_markdown(frame, spec, excluded_runs(name, runs, overrides), root, decoding)
    return markdown, render.write_outputs(
        out_dir / name, markdown, render.comparison_latex(frame, spec, decoding), frame
    )


def render_experiment(experiment: str, runs: pd.DataFrame, out_dir: Path) -> tuple[str, list[Path]]:
    chosen = runs[runs["experiment"] == experiment]
    summary = summarize(chosen)
    markdown = render.summary_markdown(summary, chosen)
    return markdown, render.write_outputs(
        out_dir / f"summary-{experiment}", markdown, render.summary_latex(summary), summary
    )


def render_all(runs: pd.DataFrame, outputs: Path, out_dir: Path, overrides=()) -> list[Path]:
    """Every paper table, the summary of every experiment found, the figures and the claims check."""
    from bora.report import claims, figures

    written: list[Path] = []
    for name in PAPER_TABLES:
        written += render_paper_table(name, runs, out_dir, overrides, outputs)[1]
    for experiment in sorted(runs["experiment"].dropna().unique()):
        written += render_experiment(experiment, runs, out_dir)[1]
    written += figures.render_figures(runs, out_dir, outputs)
    written += claims.render_claims(runs, out_dir, overrides)[1]
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bora tables", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="overrides the tables' sweeps ran with (default: none)")
    parser.add_argument("--outputs", default=os.environ.get("BORA_OUTPUT_DIR", "outputs"), help="the runs' root")
    parser.add_argument(
        "--out",
        default=None,
        help="where tables go (default: $BORA_OUTPUT_DIR/tables, else outputs/tables: rendered files are scratch)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--experiment", help="summarise one experiment_name's runs (printed)")
    group.add_argument(
        "--table",
        help=f"one of {', '.join(PAPER_TABLES)}, {', '.join(FIGURES)}, claims, or a study: "
        f"{', '.join(STUDIES)}, {ABLATIONS} (printed)",
    )
    group.add_argument("--problems", action="store_true", help="list the runs that did not succeed, and why")
    args = parser.parse_args(argv)
    run_tool(lambda: _print(args))


def _print(args) -> None:
    outputs = Path(args.outputs)
    out_dir = Path(args.out) if args.out else Path(os.environ.get("BORA_OUTPUT_DIR", "outputs")) / "tables"
    try:
        text, written = _run(args, outputs, out_dir)
    except OSError as error:  # a write into --out that failed half way (a full disk): one line, not a traceback
        if not error.filename or not Path(error.filename).resolve().is_relative_to(out_dir.resolve()):
            raise
        raise BoraError(
            f"--out {out_dir}: writing {error.filename} failed ({error.strerror or error}); pass --out a folder "
            "you can write to"
        ) from None
    if written:
        print(f"wrote {len(written)} files into {out_dir}: {', '.join(p.name for p in written)}\n")
    print(text)


def _run(args, outputs: Path, out_dir: Path) -> tuple[str, list[Path]]:
    """(the text to print, the files written) of one command line."""
    if not outputs.is_dir():
        raise BoraError(
            f"--outputs {outputs}: no such folder; pass the folder the runs were written to (the "
            f"training output_dir, e.g. outputs or results)"
        )
    runs = load_results(outputs, [args.experiment] if args.experiment else None)
    found = f"no result.json found under {outputs}" if runs.empty else f"{len(runs)} runs under {outputs}"
    if args.problems:
        bad = problems(runs)
        if bad.empty:
            return f"no problems: {found}, by status {status_counts(runs)}", []
        return bad.to_markdown(index=False), []
    why = unwritable_folder(out_dir)  # before rendering anything: every other command writes its tables into out_dir
    if why is not None:
        raise BoraError(f"--out {out_dir}: {why}; pass --out a folder you can write to")
    if args.experiment:
        if runs.empty:
            raise BoraError(
                f"no result.json under {outputs / args.experiment}; run the experiment first "
                f"(python -m bora.train -m experiment=...) or pass --outputs DIR"
            )
        markdown, written = render_experiment(args.experiment, runs, out_dir)
        return f"{markdown}\n\nruns by status: {status_counts(runs)} (only successful runs enter the table)", written
    if args.table in PAPER_TABLES:
        markdown, written = render_paper_table(args.table, runs, out_dir, args.overrides, outputs)
        return f"{markdown}\n\n({found})", written
    if args.table in GENERATION_STUDIES:
        from bora.report.generation import render_generation_study

        markdown, written = render_generation_study(args.table, runs, out_dir, outputs)
        return f"{markdown}\n\n({found})", written
    if args.table in STUDIES:
        from bora.report.study import render_study

        markdown, written = render_study(args.table, runs, out_dir, outputs)
        return f"{markdown}\n\n({found})", written
    if args.table == ABLATIONS:
        from bora.report.ablations_page import render_ablations

        markdown, written = render_ablations(outputs, out_dir, out_dir / "figures")
        return f"{markdown}\n\n(figures in {out_dir / 'figures'})", written
    if args.table in FIGURES:
        from bora.report import figures

        written = figures.render_figure(args.table, runs, out_dir, outputs)
        return f"{args.table}: {', '.join(str(p) for p in written) or 'nothing to plot yet'}", written
    if args.table == "claims":
        from bora.report import claims

        return claims.render_claims(runs, out_dir, args.overrides)
    if args.table:
        raise BoraError(
            f"unknown table {args.table!r}; choose one of: {', '.join(PAPER_TABLES)}, "
            f"{', '.join(FIGURES)}, claims, {', '.join(STUDIES)}, {ABLATIONS}"
        )
    written = render_all(runs, outputs, out_dir, args.overrides)
    counts = status_counts(runs) if not runs.empty else {}
    # the tables a reader came for: each experiment's summary (the runs that exist); the paper tables, mostly
    # "—" until their sweeps have run, are named with where they are
    summaries = [p.read_text(encoding="utf-8").strip() for p in written if p.match("summary-*.md")]
    shown = "".join(f"{text}\n\n" for text in summaries if "|" in text)  # a table, not "(no successful runs...)"
    return (
        f"{shown}rendered {len(PAPER_TABLES)} paper tables, the figures, the claims check and each experiment's "
        f"summary from {found} (by status: {counts}); the paper tables are {out_dir}/table1.md ... "
        f"(`bora tables --table table2` prints one)"
    ), written


if __name__ == "__main__":
    main()
