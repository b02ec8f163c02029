"""Synthetic ``result.json`` files shaped like the trainer's (``src/bora/train.py``), with numbers we choose."""

from __future__ import annotations

from pathlib import Path

from bora import runs
from bora.config.resolvers import method_tag

MATH_SETS = ["AddSub", "MultiArith", "SingleEq", "gsm8k", "AQuA", "SVAMP"]


def method(name: str, r: int = 8, blocks: int | None = None, heads: int | None = None, targets: str = "QKV",
           use_exp: bool = True, use_norm: bool = True) -> dict:
    return {"name": name, "r": r, "alpha": 2 * r, "dropout": 0.05, "targets": targets, "blocks": blocks,
            "heads": heads, "use_exp": use_exp, "use_norm": use_norm, "peft": {}}


def write_run(root: Path, experiment: str, model: str, task: str, method_cfg: dict, seed: int,
              metrics: dict | None = None, status: str = "success", adapter_params: int | None = 1000,
              headline: float | None = None, train_s: float = 60.0, peak_bytes: int = 2**30) -> Path:
    """One run directory ``root/<experiment>/<model>/<task>/<method_tag>/seed=<n>/result.json``."""
    run_dir = Path(root) / experiment / model / task / method_tag(method_cfg) / f"seed={seed}"
    config = {"experiment_name": experiment, "seed": seed, "model": {"name": model}, "task": {"name": task},
              "method": method_cfg}
    result = {"status": status, "experiment": experiment, "model": model, "method": method_cfg["name"],
              "task": task, "seed": seed, "config": config, "config_fingerprint": runs.fingerprint(config)}
    if status == "success":
        metrics = metrics or {}
        value = headline if headline is not None else (metrics.get("average") or {}).get("accuracy")
        result.update({
            "metrics": metrics, "headline": {"metric": "accuracy", "value": value}, "adapter_params": adapter_params,
            "train": {"wall_time_s": train_s}, "eval": {"wall_time_s": 1.0},
            "peak_memory": {"train": {"device": "cuda", "bytes": peak_bytes, "measure": "max_memory_allocated"}},
        })
    elif status == "failed":
        result["error"] = {"type": "RuntimeError", "message": "CUDA out of memory"}
    runs.write_json_atomic(run_dir / runs.RESULT_FILE, result)
    return run_dir


def math_metrics(values: dict[str, float]) -> dict:
    """``{"AddSub": 0.8, ...}`` -> the reasoning task's metrics, with the unweighted ``average``."""
    metrics = {name: {"accuracy": value} for name, value in values.items()}
    metrics["average"] = {"accuracy": sum(values.values()) / len(values)}
    return metrics


def uniform_math(value: float) -> dict:
    """Every math test set at ``value`` (so its average is ``value`` too)."""
    return math_metrics({name: value for name in MATH_SETS})
