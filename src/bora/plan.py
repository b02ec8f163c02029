"""``python -m bora.plan experiment=<name> [more overrides or sweeps]``: the runs a multirun would launch.

Prints one CSV row per planned run (model, task, method and its hyperparameters, seed, the exact number of adapter
parameters, status, run directory) and, on stderr, a summary. Nothing is trained and no weights are loaded or
downloaded: parameters are counted on a meta-device model built from the model config's ``arch``.

Status: ``done`` (a successful result of this config), ``stale`` (one on data files that have changed since:
``bora train`` refuses it, ``force=true`` reruns it), ``missing``, ``failed``, ``interrupted``, ``unfinished`` (a
result still marked running: in progress, or killed), ``conflict`` (a successful result of a different identity in
the same directory, which the trainer refuses to overwrite) or ``unreadable`` (a broken result.json).
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import OmegaConf

from bora import runs
from bora.config.identity import run_identity
from bora.config.resolvers import method_tag
from bora.config.schema import check_pairings
from bora.config.sweep import compose_jobs, expand_sweep
from bora.errors import run_tool
from bora.report.aggregate import dotted, varying_keys
from bora.tasks.sources import data_record

if TYPE_CHECKING:
    from torch import nn

FIELDS = [
    "model",
    "task",
    "method",
    "r",
    "blocks",
    "heads",
    "targets",
    "method_tag",
    "setting",
    "seed",
    "identity",
    "adapter_params",
    "status",
    "run_dir",
]


class ParamCounter:
    """Exact adapter parameter counts (``bora.params``): one meta-device build per model, one count per method."""

    def __init__(self):
        self._models: dict[str, nn.Module] = {}
        self._counts: dict[str, int] = {}

    def __call__(self, config: dict) -> int:
        from bora.models import build_from_arch
        from bora.params import adapter_param_count

        model_key = json.dumps(config["model"], sort_keys=True)
        key = model_key + json.dumps(config["method"], sort_keys=True)
        if key not in self._counts:
            cfg = OmegaConf.create(config)
            if model_key not in self._models:
                self._models[model_key] = build_from_arch(cfg.model, device="meta")
            self._counts[key] = adapter_param_count(cfg, copy.deepcopy(self._models[model_key]))[0]
        return self._counts[key]


def plan(overrides: Sequence[str], with_params: bool = True) -> list[dict]:
    """One dict per planned run (the ``FIELDS``), in the order a multirun launches them."""
    count = ParamCounter()
    configs = compose_jobs(expand_sweep(overrides))
    for config in configs:
        check_pairings(config)
    rows = []
    data_of: dict[str, dict] = {}  # per task config: the checksums of its data files (train compares the same)
    for config, setting in zip(configs, _settings(configs)):
        method = config["method"]
        identity = run_identity(config)
        task_key = json.dumps(config["task"], sort_keys=True)
        data = data_of.setdefault(task_key, data_record(config["task"]))
        shared = runs.reused(
            Path(config["run_dir"]),
            Path(config["output_dir"]),
            config["experiment_name"],
            config.get("reuse_from") or [],
            identity,
            data,
        )
        run_dir = str(shared[0]) if shared is not None else config["run_dir"]
        rows.append(
            {
                "model": config["model"]["name"],
                "task": config["task"]["name"],
                **{key: method.get(key) for key in ["r", "blocks", "heads", "targets"]},
                "method": method["name"],
                "method_tag": method_tag(method),
                "setting": setting,
                "seed": config["seed"],
                "identity": identity[:8],
                "adapter_params": count(config) if with_params else None,
                "status": runs.status_of(Path(run_dir), identity, data),
                "run_dir": run_dir,
            }
        )
    return rows


def _settings(configs: list[dict]) -> list[str]:
    """Per config, in order: the values beyond the method that tell runs of one model x task apart (a sweep over
    ``task.protocol`` or ``trainer.lr``), as ``key=value`` pairs; empty where the method alone does."""
    groups: dict[tuple, list[dict]] = {}
    for config in configs:
        groups.setdefault((config["model"]["name"], config["task"]["name"]), []).append(config)
    varying = {
        group: [key for key in varying_keys(members) if not key.startswith("method.")]
        for group, members in groups.items()
    }
    return [
        " ".join(f"{key}={dotted(config, key)}" for key in varying[(config["model"]["name"], config["task"]["name"])])
        for config in configs
    ]


def summary(rows: list[dict], name: str) -> str:
    counts = Counter(row["status"] for row in rows)
    order = ["done", "stale", "missing", "failed", "interrupted", "unfinished", "conflict", "unreadable"]
    order += sorted(set(counts) - set(order))
    parts = ", ".join(f"{counts[s]} {s}" for s in order if counts[s]) or "nothing"
    return f"{name}: {len(rows)} runs planned: {parts}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="bora plan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=table2 seed=0")
    parser.add_argument("--summary", action="store_true", help="print only the summary line (to stdout)")
    parser.add_argument("--summaries", metavar="A,B,...", help="the summary line of each of these experiments")
    parser.add_argument("--no-params", action="store_true", help="skip counting adapter parameters")
    args = parser.parse_args(argv)
    run_tool(lambda: _print_plan(args))


def _print_plan(args) -> None:
    if args.summaries:
        for experiment in args.summaries.split(","):
            rows = plan([f"experiment={experiment}", *args.overrides], with_params=False)
            print(summary(rows, f"experiment={experiment}"), flush=True)
        return
    name = ", ".join(o for o in args.overrides if o.startswith("experiment=")) or "config"
    rows = plan(args.overrides, with_params=not (args.no_params or args.summary))
    if args.summary:
        print(summary(rows, name))
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    print(summary(rows, name), file=sys.stderr)


if __name__ == "__main__":
    main()
