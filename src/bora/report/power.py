"""``bora power --study cpu-glue|cpu-commonsense|cpu-ablations [--results DIR] [--effect paper|X] [--csv FILE]``: how
many seeds (and, for a generation study, how many test questions) would make each claim of a study detectable.

The model is the one the claims are judged with (``bora.report.inference``). A claim is the mean over seeds of a
per-seed difference of two rows' Avg. Its variance has two parts:

- the seeds: the per-seed differences spread with standard deviation ``s`` (measured on the committed runs), so
  their mean has variance ``s^2 / seeds``;
- the questions (generation studies): every seed answers the same test questions, so which questions were drawn
  adds a variance of its own (measured from the committed predictions), which scales as ``1 / questions``.

A design detects an effect when it is at least ``(t_0.975 + t_0.80) x SE`` (80% power, two-sided 5% test; about
2.8 standard errors). The effect planned for is the paper's on our tasks (``--effect X``: X instead): for a gain
claim it is that difference itself; for a not-worse claim, its distance from the margin the verdict allows
(``X + NOT_WORSE_MARGIN``); for a parity claim (a ratio), its distance from the nearer tolerance bound. Per claim:
the seeds needed at the current questions (never, when the question draw alone hides the effect), and for
generation studies the questions needed at the current seeds (never, when the seed spread alone does) and, when
neither alone is enough, a design that grows both (half of the variance allowed to each source). A claim whose
seeds did not vary, or that has under 2 seeds, has no measured spread to plan with, and says so.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from bora.errors import BoraError, run_tool
from bora.report import inference
from bora.report.render import MISSING

NEVER_SEEDS = "never: the question draw alone hides it"
NEVER_QUESTIONS = "never: the seed spread alone hides it"


def _study_claims(name: str) -> Callable[[Path], pd.DataFrame]:
    def claims(root: Path) -> pd.DataFrame:
        from bora.report.aggregate import load_results
        from bora.report.generation import GENERATION_STUDIES, paired_question_variance
        from bora.report.study import STUDIES, check_study_claims

        runs = load_results(root, [STUDIES[name].experiment_name])
        if name not in GENERATION_STUDIES:
            return check_study_claims(STUDIES[name], runs)
        study = GENERATION_STUDIES[name]
        return check_study_claims(
            STUDIES[name], runs, lambda better, base, seeds: paired_question_variance(study, runs, better, base, seeds)
        )

    return claims


def _ablation_claims(root: Path) -> pd.DataFrame:
    from bora.report import ablations

    return ablations.claims(ablations.study_runs(root))


ON_OUR_TASKS = "the paper's effect on our tasks"
# study -> (its claims from a results folder, the column holding the paper's effect, what that effect is)
SOURCES: dict[str, tuple[Callable[[Path], pd.DataFrame], str, str]] = {
    "cpu-glue": (_study_claims("cpu-glue"), "paper_our_tasks", ON_OUR_TASKS),
    "cpu-commonsense": (_study_claims("cpu-commonsense"), "paper_our_tasks", ON_OUR_TASKS),
    "cpu-ablations": (_ablation_claims, "paper", "the paper's own value (Table 9 on LLaMA-3-8B, Table 7)"),
}


def target(kind: str, effect: float) -> float:
    """How far the true value ``effect`` lies from where the claim's verdict stops holding: the size to detect."""
    if kind == "not_worse":
        return effect + inference.NOT_WORSE_MARGIN
    if kind == "parity":
        return inference.PARITY_TOLERANCE - abs(effect - 1)
    return abs(effect)


def detectable(seed_sd: float, seeds: int, question_var: float, questions: int) -> float:
    """The smallest effect a design detects (as ``inference.estimate`` computes it from the runs)."""
    seed_var = seed_sd**2 / seeds if seeds > 1 and math.isfinite(seed_sd) else 0.0
    df = inference.welch_df(seed_var, seeds, question_var, questions)
    return inference.detectable_effect(math.sqrt(seed_var + question_var), df)


def _unknown(seeds: int, seed_sd: float, effect: float) -> str:
    """Why a claim cannot be planned ("" when it can)."""
    if seeds < 2:
        return "no runs" if seeds == 0 else "1 seed"
    if not seed_sd > 0:
        return "no spread"
    return "no paper number" if pd.isna(effect) else ""


def plan(claims: pd.DataFrame, paper_column: str, effect: float | None = None) -> pd.DataFrame:
    """Per claim of ``claims`` (columns ``claim, statement, kind, <paper_column>, std, seeds, question_se,
    questions``): the effect planned for (``effect``, else the paper's), the size to detect, the design now and
    what it detects, and the seeds / questions needed (None: no number does; ``unknown``: why it cannot be planned).
    """
    rows = []
    for _, claim in claims.iterrows():
        assumed = claim[paper_column] if effect is None else effect
        size = target(claim["kind"], assumed)
        sd, seeds = float(claim["std"]), int(claim["seeds"])
        question_se, questions = claim.get("question_se", 0.0), claim.get("questions", 0)
        question_var = 0.0 if pd.isna(question_se) else float(question_se) ** 2
        questions = 0 if pd.isna(questions) else int(questions)
        row = {
            "claim": claim["claim"],
            "statement": claim.get("statement", claim["claim"]),
            "kind": claim["kind"],
            "effect": assumed,
            "target": size,
            "std": sd,
            "question_se": math.sqrt(question_var),
            "questions": questions,
            "seeds": seeds,
            "detectable": detectable(sd, seeds, question_var, questions),
            "unknown": _unknown(seeds, sd, assumed),
            "seeds_needed": None,
            "questions_needed": None,
            "both_seeds": None,
            "both_questions": None,
        }
        if not row["unknown"] and size > 0:
            row["seeds_needed"] = inference.seeds_needed(sd, question_var, size)
            row["questions_needed"] = inference.questions_needed(sd, seeds, question_var, questions, size)
            if question_var > 0 and row["seeds_needed"] is None and row["questions_needed"] is None:
                both_seeds = inference.seeds_needed(sd, 0.0, size / math.sqrt(2))
                if both_seeds is not None:
                    row["both_seeds"] = both_seeds
                    row["both_questions"] = inference.questions_needed(sd, both_seeds, question_var, questions, size)
        rows.append(row)
    return pd.DataFrame(rows)


def _never_seeds(row: pd.Series) -> str:
    """Why no number of seeds (up to ``seeds_needed``'s 1000) detects the claim."""
    hidden = inference.detectable_effect(row["question_se"], 10**6) > row["target"]  # with infinitely many seeds
    return NEVER_SEEDS if hidden else "over 1000"


def _needed(row: pd.Series, column: str, never: str) -> str:
    if row["unknown"]:
        return f"unknown: {row['unknown']}"
    if not row["target"] > 0:
        return "never: nothing to detect"
    value = row[column]
    return never if value is None or pd.isna(value) else str(int(value))


def _number(value: float, sign: str = "") -> str:
    return MISSING if pd.isna(value) else f"{value:{sign}.2f}"


def is_generation(planned: pd.DataFrame) -> bool:
    """Whether the question draw's variance is known (a generation study with its predictions committed)."""
    return bool((planned["question_se"] > 0).any())


def display(planned: pd.DataFrame) -> pd.DataFrame:
    """The plan as printed: one row per claim."""
    generation = is_generation(planned)
    table = {
        "claim": planned["statement"],
        "effect": planned["effect"].map(lambda v: _number(v, "+")),
        "to detect": planned["target"].map(_number),
        "seed sd": planned["std"].map(_number),
    }
    if generation:
        table["question SE"] = [
            f"{_number(se)} ({q} q.)" for se, q in zip(planned["question_se"], planned["questions"])
        ]
    table["seeds now"] = planned["seeds"].astype(str)
    table["detectable now"] = planned["detectable"].map(_number)
    table["seeds needed"] = [_needed(row, "seeds_needed", _never_seeds(row)) for _, row in planned.iterrows()]
    if generation:
        table["questions needed"] = [_needed(row, "questions_needed", NEVER_QUESTIONS) for _, row in planned.iterrows()]
        table["or both"] = [
            MISSING if pd.isna(seeds) or pd.isna(count) else f"{int(seeds)} seeds x {int(count)} q."
            for seeds, count in zip(planned["both_seeds"], planned["both_questions"])
        ]
    return pd.DataFrame(table)


def note(generation: bool, effect: float | None, paper_effect: str = ON_OUR_TASKS) -> str:
    assumed = paper_effect if effect is None else f"a true effect of {effect:+g}"
    text = (
        f"Effect: {assumed}. To detect: its distance from where the verdict stops holding (gain: from 0; not worse: "
        f"from -{inference.NOT_WORSE_MARGIN:g}; parity: from the {inference.PARITY_TOLERANCE:g} tolerance). "
        "Detectable: the smallest effect a design finds with 80% power ((t_0.975 + t_0.80) x SE). Seeds needed: "
        "the fewest seeds whose design detects it, with the seed sd as measured"
    )
    if generation:
        text += (
            " and the question draw's variance as now; questions needed: the fewest test questions in all (spread "
            "over the sets as now; the variance scales as 1 / questions) at the current seeds; or both: when neither "
            "alone is enough, a design that grows both (half the variance allowed to the seeds)"
        )
    return text + "."


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bora power", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", required=True, help=f"one of {', '.join(SOURCES)}")
    parser.add_argument("--results", default="results", help="the runs' root (default: results, the committed runs)")
    parser.add_argument("--effect", default="paper", help="paper (the paper's effect on our tasks) or a number")
    parser.add_argument("--csv", help="also write the plan (numbers, not text) to this CSV file")
    args = parser.parse_args(argv)
    run_tool(lambda: print(_run(args)))


def _run(args) -> str:
    if args.study not in SOURCES:
        raise BoraError(f"unknown study {args.study!r}; choose one of: {', '.join(SOURCES)}")
    try:
        effect = None if args.effect == "paper" else float(args.effect)
    except ValueError:
        raise BoraError(f"--effect {args.effect!r}: pass paper or a number (e.g. --effect 1.0)") from None
    root = Path(args.results)
    if not root.is_dir():
        raise BoraError(f"--results {root}: no such folder; pass the folder the runs were written to (e.g. results)")
    claims_of, paper_column, paper_effect = SOURCES[args.study]
    planned = plan(claims_of(root), paper_column, effect)
    table = display(planned).to_markdown(index=False, disable_numparse=True)
    text = f"Seeds (and questions) to detect each claim of {args.study}, from the runs under {root}:\n\n{table}"
    text += f"\n\n{note(is_generation(planned), effect, paper_effect)}"
    if args.csv:
        planned.to_csv(args.csv, index=False)
        text += f"\n\nwrote {args.csv}"
    return text


if __name__ == "__main__":
    main()
