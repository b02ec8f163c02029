"""Synthetic runs for table tests: real ``RunRecord`` files (the trainer's own writer), with numbers we choose.

A run's config is composed exactly as ``python -m bora.train experiment=<plan> model=... task=... method=... seed=...``
would compose it, so its identity is the one the experiment plans (or, with other overrides, one it does not).
"""

from __future__ import annotations

import functools
from pathlib import Path

from bora.config import load_config, resolved
from bora.config.identity import group_identity, run_identity
from bora.record import RunRecord, write_record

MATH_SETS = ["AddSub", "MultiArith", "SingleEq", "gsm8k", "AQuA", "SVAMP"]
# experiment_name -> the experiment file whose plan its runs follow by default
PLANS = {
    "math": "table2",
    "glue": "table1",
    "commonsense": "table3",
    "efficiency": "table4",
    "sbora-math": "sbora-math",
    "sbora-commonsense": "sbora-commonsense",
}


def method(
    name: str,
    r: int = 8,
    blocks: int | None = None,
    heads: int | None = None,
    targets: str = "QKV",
    use_exp: bool = True,
    use_norm: bool = True,
) -> dict:
    return {
        "name": name,
        "r": r,
        "alpha": 2 * r,
        "dropout": 0.05,
        "targets": targets,
        "blocks": blocks,
        "heads": heads,
        "use_exp": use_exp,
        "use_norm": use_norm,
    }


def method_overrides(method_cfg: dict) -> list[str]:
    values = [f"method={method_cfg['name']}"]
    for key in ("r", "alpha", "dropout", "targets", "blocks", "heads", "use_exp", "use_norm"):
        value = method_cfg.get(key)
        values.append(
            f"method.{key}={'null' if value is None else str(value).lower() if isinstance(value, bool) else value}"
        )
    return values


@functools.cache
def _config(
    plan: str, experiment: str, model: str, task: str, method_items: tuple, seed: int, extra: tuple, root: str
) -> dict:
    overrides = [
        f"experiment={plan}",
        f"experiment_name={experiment}",
        f"model={model}",
        f"task={task}",
        *method_overrides(dict(method_items)),
        f"seed={seed}",
        f"output_dir={root}",
        *extra,
    ]
    return resolved(load_config(overrides))


def write_run(
    root: Path,
    experiment: str,
    model: str,
    task: str,
    method_cfg: dict,
    seed: int,
    metrics: dict | None = None,
    status: str = "success",
    adapter_params: int | None = 1000,
    headline: float | None = None,
    train_s: float = 60.0,
    peak_bytes: int = 2**30,
    plan: str | None = None,
    extra: tuple[str, ...] = (),
    adapter_stats: dict | None = None,
) -> Path:
    """One run's result.json in the run directory the trainer would use (``<root>/<experiment>/...``).

    ``plan``: the experiment file whose settings the run follows (default ``PLANS[experiment]``, else ``smoke``);
    ``extra``: more overrides (e.g. ``("trainer.lr=0.5",)``: a run the plan does not contain); ``task`` is the task
    config to compose (``cpu/mrpc``); the record names the task as the config does (``mrpc``)."""
    plan = plan or PLANS.get(experiment, "smoke")
    config = _config(plan, experiment, model, task, tuple(sorted(method_cfg.items())), seed, tuple(extra), str(root))
    fields = dict(
        status=status,
        experiment=experiment,
        model=model,
        method=method_cfg["name"],
        task=config["task"]["name"],
        seed=seed,
        run_dir=config["run_dir"],
        identity=run_identity(config),
        group=group_identity(config),
        config=config,
        started_at="2026-01-01T00:00:00+00:00",
    )
    if status == "success":
        metrics = metrics or {}
        # the record's headline is the metric its task reports (bora.record.success_problem checks it)
        reported = metrics.get("average") or metrics.get(config["task"]["name"]) or {}
        value = headline if headline is not None else reported.get("accuracy")
        fields.update(
            {
                "metrics": metrics,
                "headline": {"metric": "accuracy", "value": value},
                "adapter_params": adapter_params,
                "train": {"wall_time_s": train_s, "global_steps": 10, "epochs": 1.0, "examples": 160, "mean_loss": 1.0},
                "eval": {"wall_time_s": 1.0},
                "peak_memory": {"train": {"device": "cuda", "bytes": peak_bytes, "measure": "max_memory_allocated"}},
                "adapter_stats": adapter_stats or {},
            }
        )
    elif status == "failed":
        fields["error"] = {"type": "RuntimeError", "message": "CUDA out of memory"}
    write_record(Path(config["run_dir"]), RunRecord.model_validate(fields))
    return Path(config["run_dir"])


def math_metrics(values: dict[str, float]) -> dict:
    """``{"AddSub": 0.8, ...}`` -> the reasoning task's metrics, with the unweighted ``average``."""
    metrics = {name: {"accuracy": value} for name, value in values.items()}
    metrics["average"] = {"accuracy": sum(values.values()) / len(values)}
    return metrics


def uniform_math(value: float) -> dict:
    """Every math test set at ``value`` (so its average is ``value`` too)."""
    return math_metrics(dict.fromkeys(MATH_SETS, value))


GLUE_TASKS = {"cpu/mrpc": "mrpc", "cpu/stsb": "stsb", "cpu/cola": "cola", "cpu/sst2": "sst2"}  # cpu-glue's four


def write_glue_study_runs(
    root: Path, method_cfg: dict, per_seed: list[float], tasks: dict = GLUE_TASKS, stats_of_seed=None, **fields
) -> None:
    """cpu-glue runs of ``method_cfg``: at seed ``s`` every task scores ``per_seed[s]`` (so its Avg does too);
    ``stats_of_seed(s)``: the run's ``adapter_stats``; ``fields``: more ``write_run`` arguments (``train_s``)."""
    for seed, value in enumerate(per_seed):
        for config, name in tasks.items():
            write_run(
                root,
                "cpu-glue",
                "minilm",
                config,
                method_cfg,
                seed,
                {name: {"accuracy": value}},
                headline=value,
                plan="cpu-glue",
                adapter_stats=stats_of_seed(seed) if stats_of_seed else None,
                **fields,
            )


def write_commonsense_study_runs(root: Path, method_cfg: dict, metrics_per_seed: list[dict]) -> None:
    """cpu-commonsense runs of ``method_cfg``, seed ``s`` with the metrics ``metrics_per_seed[s]``."""
    for seed, metrics in enumerate(metrics_per_seed):
        write_run(
            root,
            "cpu-commonsense",
            "smollm2-135m",
            "cpu/commonsense",
            method_cfg,
            seed,
            metrics,
            plan="cpu-commonsense",
        )
