"""A study's protocol selection (cpu-glue-protocol) from synthetic result files: scores per lr, the lr used marked."""

from synthetic_results import method, write_run

from bora.report.aggregate import load_results
from bora.report.selection import SELECTIONS, render_selection, selection_table

SELECTION = SELECTIONS["cpu-glue-protocol"]
LORA8 = method("lora", targets="QV")
TASKS = {"cpu/mrpc": "mrpc", "cpu/cola": "cola", "cpu/stsb": "stsb", "cpu/sst2": "sst2"}


def _selection_runs(root, scores: dict[float, float], skip: tuple = ()):
    """``scores[lr]``: the held-out score of every task at that learning rate (``skip``: (lr, task) not finished)."""
    for lr, value in scores.items():
        for config, name in TASKS.items():
            if (lr, name) not in skip:
                write_run(
                    root,
                    "cpu-glue-protocol",
                    "minilm",
                    config,
                    LORA8,
                    0,
                    {name: {"accuracy": value}},
                    headline=value,
                    plan="cpu-glue-protocol",
                    extra=(f"trainer.lr={lr}",),
                )


def _study_run(root, lr: float):
    write_run(
        root,
        "cpu-glue",
        "minilm",
        "cpu/mrpc",
        LORA8,
        0,
        {"mrpc": {"accuracy": 0.7}},
        headline=0.7,
        plan="cpu-glue",
        extra=(f"trainer.lr={lr}",),
    )


def test_table_has_a_row_per_lr_and_a_mean_only_where_every_task_finished(tmp_path):
    _selection_runs(tmp_path, {5e-4: 0.6, 1e-3: 0.8}, skip=((5e-4, "cola"),))
    table = selection_table(SELECTION, load_results(tmp_path, ["cpu-glue-protocol"]))
    assert list(table["lr"]) == [5e-4, 1e-3]
    assert table.loc[1, "mean"] == 0.8 and table.loc[1, "CoLA MCC"] == 0.8
    assert table.loc[0, "mean"] != table.loc[0, "mean"]  # NaN: CoLA missing


def test_render_marks_the_lr_the_study_used_and_says_when_it_is_not_the_best(tmp_path):
    _selection_runs(tmp_path, {5e-4: 0.6, 1e-3: 0.8, 2e-3: 0.7})
    _study_run(tmp_path, 1e-3)
    text = render_selection("cpu-glue-protocol", tmp_path)
    assert "| **lr 0.001** (used)" in text and "**0.800**" in text
    assert "The best mean is the rate the study used (lr 0.001)" in text
    _selection_runs(tmp_path / "other", {5e-4: 0.9, 1e-3: 0.8})
    _study_run(tmp_path / "other", 1e-3)
    text = render_selection("cpu-glue-protocol", tmp_path / "other")
    assert "The best mean here is lr 0.0005, not the rate the study used (0.001)" in text


def test_a_task_of_several_held_out_parts_has_a_column_per_part(tmp_path):
    """cpu-commonsense-protocol: one run per lr scores four held-out training parts; each part is a column."""
    parts = {"boolq": 0.6, "ARC-Challenge": 0.3, "ARC-Easy": 0.4, "openbookqa": 0.5}
    for lr, shift in ((3e-4, 0.0), (1e-3, 0.1)):
        metrics = {f"{part}_heldout": {"accuracy": value + shift, "n": 100.0} for part, value in parts.items()}
        metrics["average"] = {"accuracy": 0.45 + shift}
        write_run(
            tmp_path,
            "cpu-commonsense-protocol",
            "smollm2-135m",
            "cpu/commonsense",
            method("lora"),
            0,
            metrics,
            plan="cpu-commonsense-protocol",
            extra=(f"trainer.lr={lr}",),
        )
    table = selection_table(
        SELECTIONS["cpu-commonsense-protocol"], load_results(tmp_path, ["cpu-commonsense-protocol"])
    )
    assert list(table.columns) == ["lr", "BoolQ acc", "ARC-c acc", "ARC-e acc", "OBQA acc", "mean"]
    assert table.loc[1, "ARC-c acc"] == 0.4 and abs(table.loc[1, "mean"] - 0.55) < 1e-12
    text = render_selection("cpu-commonsense-protocol", tmp_path)
    assert "| lr 0.001 " in text and "mean: of the 4 columns" in text
