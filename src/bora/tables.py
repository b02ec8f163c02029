"""``python -m bora.tables [--experiment NAME] [--outputs DIR]``: print the results table of finished runs."""

from __future__ import annotations

import argparse
import os
import sys

from bora.aggregate import load_results, status_counts, summarize


def render_summary(summary) -> str:
    """Markdown: one row per model x task x method, the headline metric as mean ± std (x100) over seeds."""
    if summary.empty:
        return "(no successful runs)"
    table = summary.assign(
        score=[f"{100 * m:.2f} ± {100 * s:.2f}" if s == s else f"{100 * m:.2f}" for m, s in zip(summary["mean"], summary["std"])]
    )
    columns = ["experiment", "model", "task", "method_tag", "metric", "score", "seeds", "adapter_params"]
    return table[columns].to_markdown(index=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--outputs", default=os.environ.get("BORA_OUTPUT_DIR", "outputs"))
    parser.add_argument("--experiment", default=None, help="only this experiment_name")
    args = parser.parse_args(argv)
    results = load_results(args.outputs)
    if args.experiment:
        results = results[results["experiment"] == args.experiment]
    if results.empty:
        print(f"error: no result.json under {args.outputs}" + (f" for experiment {args.experiment}" if args.experiment else ""),
              file=sys.stderr)
        sys.exit(2)
    print(render_summary(summarize(results)))
    print(f"\nruns by status: {status_counts(results)} (only successful runs enter the table)")


if __name__ == "__main__":
    main()
