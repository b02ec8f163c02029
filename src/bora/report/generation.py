"""A generation study (e.g. ``cpu-commonsense``: Table 3's rows on SmolLM2-135M, on a CPU), from result files.

Beside the method rows and the paper's claims (``bora.report.study``: the same table and claim code as cpu-glue), a
reader of a small generation study needs to see whether the model learnt anything and how the decoding behaved, so
the rendering adds, all from the committed result files (each test set's metrics record ``n``, ``majority``,
``at_limit`` and ``repeated_marker``, bora.tasks.llm_adapters.set_metrics):

- the untrained model's score (``conf/experiment/<study>-untrained.yaml``: ``trainer.max_steps=0``) and the
  majority share of each test set (what always giving its most common answer scores);
- the binomial standard error of one run's accuracy, ``sqrt(p (1 - p) / n)``, beside the seed spread, and for each
  claim the standard error the test questions put on its difference (paired: every run answers the same questions);
- per method row: the share of generations cut at the token limit and of those that write ``### Response:`` again
  (where the protocols' answer cuts differ), and how often a run gives its single most common answer (read from
  the committed predictions): a model that learnt the answer format but not the task gives one answer to most
  questions; and its training loss as logged, step by step (how soon it fit the training answers).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bora.config.resolvers import method_tag
from bora.record import read_record
from bora.report.render import MISSING, decoding_line, excluded_markdown, latex_table, ours_cell, write_outputs
from bora.report.specs import membership, planned
from bora.report.study import STUDIES, check_study_claims, claims_display, claims_note, study_table


@dataclass(frozen=True)
class GenerationStudy:
    name: str  # a bora.report.study.STUDIES entry: its table, columns and claims
    untrained: str  # the experiment (and experiment_name) of the untrained run
    figures: str  # its figures' folder, relative to the project root (bora.report.generation_figures; `make readme`)


GENERATION_STUDIES = {
    study.name: study
    for study in [
        GenerationStudy("cpu-commonsense", "cpu-commonsense-untrained", "results/cpu-commonsense/figures"),
    ]
}


def _set_metric(runs: pd.DataFrame, subtask: str, metric: str) -> pd.Series:
    return pd.Series(
        [(run["metrics"].get(subtask) or {}).get(metric) for _, run in runs.iterrows()], index=runs.index, dtype=float
    )


def prediction_rows(run_dir: str | Path, subtask: str) -> list[dict] | None:
    """A run's committed ``predictions/<set>.jsonl`` (one dict per question: ``prediction``, ``answer``, ``correct``,
    ...); None without the file."""
    path = Path(run_dir) / "predictions" / f"{subtask}.jsonl"
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def favourite_share(rows: list[dict] | None) -> float:
    """The share of a run's most common answer among the questions it answered on one test set (its
    ``prediction_rows``; NaN without rows or answers): near 1, the model gives one answer whatever the question; the
    gold answers' own share is the set's ``majority``. Unanswered questions (no answer extracted) are not an answer:
    ``unanswered_share`` counts them."""
    answers = pd.Series([r["prediction"] for r in rows or [] if r["prediction"] is not None], dtype=object)
    return answers.value_counts(normalize=True).iloc[0] if len(answers) else math.nan


def unanswered_share(rows: list[dict] | None) -> float:
    """The share of a set's questions from which no answer was extracted (NaN without rows)."""
    if not rows:
        return math.nan
    return sum(r["prediction"] is None for r in rows) / len(rows)


def above_guessing(rows: list[dict] | None) -> float:
    """A run's accuracy on one test set (its ``prediction_rows``) minus what guessing with its own answer
    frequencies would score there (``sum over answers a of share_predicted(a) x share_gold(a)``; an unanswered
    question is never right; NaN without rows). Near 0: the answers are as good as drawing them at random in the
    run's own proportions, so accuracy differences come from which answer a run favours, not from the questions."""
    if not rows:
        return math.nan
    predicted = pd.Series([r["prediction"] for r in rows]).value_counts(normalize=True, dropna=False)
    gold = pd.Series([r["answer"] for r in rows]).value_counts(normalize=True)
    guessing = sum(share * gold.get(answer, 0.0) for answer, share in predicted.items())
    return sum(bool(r["correct"]) for r in rows) / len(rows) - guessing


def binomial_se(accuracy: float, n: float) -> float:
    """The standard error of an accuracy measured on ``n`` questions (one run's sampling noise)."""
    if n is None or not n or pd.isna(accuracy) or pd.isna(n):
        return math.nan
    return math.sqrt(accuracy * (1 - accuracy) / n)


def paired_question_variance(
    study: GenerationStudy, runs: pd.DataFrame, better_tag: str, baseline_tag: str, seeds: list[int] | None = None
) -> tuple[float, int]:
    """(the variance, x100 squared, that the choice of test questions alone puts on a claim's mean difference of
    Avg, ``better`` minus ``baseline`` over ``seeds`` (default: every seed both rows have); the questions it rests
    on), from the committed predictions.

    Both rows answer the same questions, so the difference is paired: per set, each question's difference of
    correctness (-1, 0 or 1) averaged over the seeds, whose mean is that set's difference of accuracy and whose
    ``var / n`` is its variance; the sets are independent draws, and Avg is their mean. The seeds share the
    questions, so they are averaged per question first, not treated as independent samples (the seeds' own spread
    is the other source, ``bora.report.inference.estimate``). (NaN, 0) when a run lacks its predictions or the rows
    answered different questions."""
    spec = STUDIES[study.name]
    chosen = membership(runs, spec.experiment_name, spec.experiment)[0]
    run_dirs = {tag: dict(zip(part["seed"].astype(int), part["run_dir"])) for tag, part in chosen.groupby("method_tag")}
    better, baseline = run_dirs.get(better_tag, {}), run_dirs.get(baseline_tag, {})
    seeds = sorted(set(better) & set(baseline) & (set(seeds) if seeds is not None else set(better)))
    if not seeds:
        return math.nan, 0
    variance, questions = 0.0, 0
    for column in spec.columns:
        # one column per run (better and baseline of each seed), one row per question id
        correct = {}
        for side, run_dirs_of in (("better", better), ("baseline", baseline)):
            for seed in seeds:
                rows = prediction_rows(run_dirs_of[seed], column.subtask)
                if rows is None:
                    return math.nan, 0
                correct[side, seed] = pd.Series({r["id"]: float(r["correct"]) for r in rows})
        table = pd.DataFrame(correct)
        if table.isna().any().any():  # the runs answered different questions
            return math.nan, 0
        differences = (table["better"] - table["baseline"]).mean(axis=1)  # per question, over the seeds
        variance += differences.var(ddof=1) / len(differences)
        questions += len(differences)
    return 100**2 * variance / len(spec.columns) ** 2, questions


def paired_question_se(study: GenerationStudy, runs: pd.DataFrame, better_tag: str, baseline_tag: str) -> float:
    """The standard error (x100) of ``paired_question_variance`` over every seed both rows have."""
    return math.sqrt(paired_question_variance(study, runs, better_tag, baseline_tag)[0])


def reference_rows(study: GenerationStudy, runs: pd.DataFrame) -> pd.DataFrame:
    """The untrained model's accuracy and each set's majority share (x100), with the questions behind each."""
    spec = STUDIES[study.name]
    trained = membership(runs, spec.experiment_name, spec.experiment)[0]
    untrained = membership(runs, study.untrained, study.untrained)[0]
    rows = []
    for label, source, metric in (
        ("untrained model", untrained, "accuracy"),
        ("majority answer", trained, "majority"),
        ("majority answer (untrained's questions)", untrained, "majority"),
    ):
        row = {"row": label}
        for column in spec.columns:
            values = _set_metric(source, column.subtask, metric).dropna()
            counts = _set_metric(source, column.subtask, "n").dropna()
            row[column.label] = 100 * values.iloc[0] if len(values) else math.nan
            row[f"{column.label} n"] = counts.iloc[0] if len(counts) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def decoding_table(study: GenerationStudy, runs: pd.DataFrame) -> pd.DataFrame:
    """Per method row (and the untrained run): the binomial standard error of one run's accuracy (mean over its
    runs and test sets, x100), and the shares (in %) of generations cut at the token limit or repeating the marker,
    over every question of its runs."""
    spec = STUDIES[study.name]
    trained = membership(runs, spec.experiment_name, spec.experiment)[0]
    untrained = membership(runs, study.untrained, study.untrained)[0].assign(method_tag="untrained")
    rows = []
    for tag, part in pd.concat([trained, untrained]).groupby("method_tag", sort=False):
        errors, favourites, unanswered, above, questions, at_limit, repeated = [], [], [], [], 0.0, 0.0, 0.0
        for column in spec.columns:
            accuracy = _set_metric(part, column.subtask, "accuracy")
            n = _set_metric(part, column.subtask, "n")
            errors += [binomial_se(a, k) for a, k in zip(accuracy, n)]
            predictions = [prediction_rows(run_dir, column.subtask) for run_dir in part["run_dir"]]
            favourites += [favourite_share(rows) for rows in predictions]
            unanswered += [unanswered_share(rows) for rows in predictions]
            above += [above_guessing(rows) for rows in predictions]
            questions += n.sum()
            at_limit += (_set_metric(part, column.subtask, "at_limit") * n).sum()
            repeated += (_set_metric(part, column.subtask, "repeated_marker") * n).sum()
        rows.append(
            {
                "method_tag": tag,
                "runs": len(part),
                "questions": int(questions),
                "binomial_se": 100 * _mean(errors),
                "favourite_pct": 100 * _mean(favourites),
                "unanswered_pct": 100 * _mean(unanswered),
                "above_guessing": 100 * _mean(above),
                "at_limit_pct": 100 * at_limit / questions if questions else math.nan,
                "repeated_marker_pct": 100 * repeated / questions if questions else math.nan,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "method_tag",
            "runs",
            "questions",
            "binomial_se",
            "favourite_pct",
            "unanswered_pct",
            "above_guessing",
            "at_limit_pct",
            "repeated_marker_pct",
        ],
    )


def loss_history(study: GenerationStudy, runs: pd.DataFrame) -> pd.DataFrame:
    """Per planned run and logged step: its method tag, seed, the logged training loss (the mean over the steps since
    the previous log, as HF's Trainer logs it) and the run's mean loss over every step, from ``train`` of its
    result file."""
    spec = STUDIES[study.name]
    trained = membership(runs, spec.experiment_name, spec.experiment)[0]
    rows = []
    for _, run in trained.iterrows():
        train = read_record(run["run_dir"]).train
        mean_loss = math.nan if train.mean_loss is None else train.mean_loss
        rows += [
            {
                "method_tag": run["method_tag"],
                "seed": int(run["seed"]),
                "step": point.step,
                "loss": point.loss,
                "mean_loss": mean_loss,
            }
            for point in train.loss_history
        ]
    return pd.DataFrame(rows, columns=["method_tag", "seed", "step", "loss", "mean_loss"])


def training_table(study: GenerationStudy, runs: pd.DataFrame) -> pd.DataFrame:
    """Per method row: its runs, the mean training loss over every step, and the logged loss at each logged step,
    each the mean over the row's runs. How fast a method fits the training answers is what the accuracies of a
    short run cannot show."""
    history = loss_history(study, runs)
    per_run = history.drop_duplicates(["method_tag", "seed"])
    table = per_run.groupby("method_tag", sort=False).agg(runs=("seed", "size"), mean_loss=("mean_loss", "mean"))
    steps = history.pivot_table(index="method_tag", columns="step", values="loss", aggfunc="mean", sort=False)
    steps.columns = [f"step {step}" for step in steps.columns]
    return table.join(steps).reset_index()


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _cell(value: float, digits: int = 2) -> str:
    return MISSING if pd.isna(value) else f"{value:.{digits}f}"


def render_generation_study(
    name: str, runs: pd.DataFrame, out_dir: Path, root: Path | None = None
) -> tuple[str, list[Path]]:
    """The study's Markdown (main table with the untrained and majority rows, claims, decoding) and its files."""
    study = GENERATION_STUDIES[name]
    spec = STUDIES[name]
    chosen, left_out = membership(runs, spec.experiment_name, spec.experiment)
    table = study_table(spec, runs)
    # the paper's rows this study does not run (cut to fit the CPU budget) are named under the table, not shown empty
    planned_tags = {method_tag(config["method"]) for config in planned(spec.experiment)}
    cut = list(dict.fromkeys(table.loc[~table["method_tag"].isin(planned_tags), "label"]))
    table = table[table["method_tag"].isin(planned_tags)]
    labels = [c.label for c in spec.columns]
    display = []
    for label, lines in table.groupby("label", sort=False):
        params = lines["params"].iloc[0]
        row = {"method": label, "#Params": MISSING if params is None or pd.isna(params) else f"{int(params):,}"}
        row.update({line["column"]: ours_cell(line) for _, line in lines.iterrows()})
        display.append(row)
    references = reference_rows(study, runs)
    for _, ref in references.iterrows():
        row = {"method": ref["row"], "#Params": ""}
        row.update({label: _cell(ref[label]) for label in labels})
        values = [ref[label] for label in labels]
        row["Avg"] = _cell(sum(values) / len(values)) if not any(pd.isna(v) for v in values) else MISSING
        display.append(row)
    main = pd.DataFrame(display)
    sizes = ", ".join(f"{label} {_cell(references.loc[1, f'{label} n'], 0)}" for label in labels)
    untrained_sizes = ", ".join(f"{label} {_cell(references.loc[0, f'{label} n'], 0)}" for label in labels)
    claims = check_study_claims(
        spec, runs, lambda better, baseline, seeds: paired_question_variance(study, runs, better, baseline, seeds)
    )
    shown = claims_display(claims)  # (the paper's wording of them is about GLUE, Table 1: left out here)
    shown.insert(4, "SE from the questions", claims["question_se"].map(lambda v: _cell(v) if v > 0 else MISSING))
    labels_of = {**dict(zip(table["method_tag"], table["label"])), "untrained": "untrained model"}
    order = {tag: i for i, tag in enumerate(labels_of)}  # the main table's rows, then the untrained run
    decoding = decoding_table(study, runs)
    decoding = decoding.sort_values("method_tag", key=lambda tags: tags.map(order), kind="stable")
    decoding_display = pd.DataFrame(
        {
            "row": decoding["method_tag"].map(lambda tag: labels_of.get(tag, tag)),
            "runs": decoding["runs"].astype(str),
            "questions": decoding["questions"].astype(str),
            "binomial SE of one run's accuracy": decoding["binomial_se"].map(_cell),
            "its most common answer (% of answered)": decoding["favourite_pct"].map(lambda v: _cell(v, 1)),
            "unanswered (%)": decoding["unanswered_pct"].map(lambda v: _cell(v, 1)),
            "accuracy above its own guessing": decoding["above_guessing"].map(_cell),
            "cut at the token limit (%)": decoding["at_limit_pct"].map(lambda v: _cell(v, 1)),
            "repeat `### Response:` (%)": decoding["repeated_marker_pct"].map(lambda v: _cell(v, 1)),
        }
    )
    training = training_table(study, runs)
    training = training.sort_values("method_tag", key=lambda tags: tags.map(order), kind="stable")
    step_columns = [c for c in training.columns if c.startswith("step ") and c != "step 1"]
    training_display = pd.DataFrame(
        {
            "row": training["method_tag"].map(lambda tag: labels_of.get(tag, tag)),
            "runs": training["runs"].astype(str),
            "mean loss": training["mean_loss"].map(lambda v: _cell(v, 3)),
            **{c: training[c].map(lambda v: _cell(v, 3)) for c in step_columns},
        }
    )
    protocol = decoding_line(list(chosen["config"])) if len(chosen) else ""
    parts = [
        f"### {spec.title}",
        main.to_markdown(index=False, disable_numparse=True),
        f"Accuracy x100, mean ±std over seeds (ddof=1) of our runs of conf/experiment/{spec.experiment}.yaml; "
        "Avg: the mean of the four, per seed; #Params: adapter parameters; [n/planned]: fewer seeds finished "
        f"than planned. Questions per set: {sizes} (the untrained run: {untrained_sizes}, of the same seeded "
        f"draw; conf/experiment/{study.untrained}.yaml). Majority answer: the share of the most common gold "
        "answer, what always giving it scores. "
        + protocol
        + (f" Not in this study (cut to fit the CPU budget): {', '.join(cut)}." if cut else "")
        + excluded_markdown(left_out, root),
        f"![{spec.title.split(':')[0]}: accuracy per run]({study.figures}/accuracy.png)",
        "#### The paper's claims, recomputed",
        shown.to_markdown(index=False, disable_numparse=True),
        "Paper: the same difference in the paper's Table 3, averaged over its three models, on its 8 sets and "
        "on our 4 (the verdicts compare with the latter). SE from the questions: the standard error the draw of "
        "test questions alone puts on the difference (paired: both rows answered the same questions; per question "
        "the difference of correctness averaged over the seeds, var / n per set, the sets combined as Avg is), "
        "from the committed predictions; the seeds all answer the same questions, so their spread cannot show it. "
        + claims_note(
            claims,
            "the seeds' spread plus the question draw's variance (Welch-Satterthwaite degrees of freedom)",
        ),
        "#### Decoding",
        decoding_display.to_markdown(index=False, disable_numparse=True),
        "Binomial SE: sqrt(p (1 - p) / n) of one run on one set (x100), the mean over a row's runs and sets: "
        "the noise of a single number, beside the seed spread above. Its most common answer: the share of a run's "
        "answers on one set that are its single most frequent one (from predictions/<set>.jsonl), among the "
        "questions it answered, the mean over the row's runs and sets; unanswered: the questions from which no "
        "answer could be extracted (never right); the gold answers' own share is the majority row above (mean "
        + _cell(_mean([references.loc[1, label] for label in labels]), 1)
        + "). Accuracy above its own "
        "guessing (x100): a run's accuracy on a set minus what drawing its answers at random in its own "
        "proportions would score (the sum over answers of predicted share x gold share), the mean over the row's "
        "runs and sets: near 0, the accuracies above differ by which answer a run favours, not by the "
        "questions. Cut at the token limit: generations that reached task.max_new_tokens without EOS; repeat: "
        "generations that write the response marker again, "
        "the only ones where the protocols' answer cuts (text after the last marker, or before the second) "
        "differ.",
        "#### Training loss",
        training_display.to_markdown(index=False, disable_numparse=True),
        "Training loss on the response tokens (cross-entropy per token), the mean over a row's runs: over every "
        "step of a run (mean loss), and as logged at each step (step N: the mean over the steps since the "
        "previous log; the first step, the untrained model's loss, is the same for every row). A row that "
        "fits its training answers later has had fewer steps to learn their exact wording.",
        f"![{spec.title.split(':')[0]}: training loss]({study.figures}/training-loss.png)",
    ]
    markdown = "\n\n".join(parts)
    out_dir = Path(out_dir)
    written = write_outputs(out_dir / name, markdown, latex_table(main, spec.title), table)
    for part, frame in (("claims", claims), ("references", references), ("decoding", decoding), ("training", training)):
        frame.to_csv(out_dir / f"{name}-{part}.csv", index=False)
        written.append(out_dir / f"{name}-{part}.csv")
    return markdown, written
