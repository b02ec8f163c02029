"""``python -m bora.plan experiment=<name> [more overrides or sweeps]``: the runs a multirun would launch.

Prints one CSV row per planned run (model, task, method and its hyperparameters, seed, the exact number of adapter
parameters, status, run directory) and, on stderr, a summary. Nothing is trained and no weights are loaded or
downloaded: parameters are counted on a meta-device model built from the model config's ``arch``.

Status: ``done`` (a successful result of this config), ``missing``, ``failed``, ``unfinished`` (a result still
marked running: in progress, or killed) or ``conflict`` (a successful result of a different config, which the
trainer refuses to overwrite).
"""

from __future__ import annotations

import argparse
import copy
import csv
import dataclasses
import json
import sys
import typing
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the sweeper `-m` uses: the same expansion
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from bora import runs
from bora.cli import load_config
from bora.config.schema import Config
from bora.errors import BoraError
from bora.paths import CONF_DIR

if TYPE_CHECKING:
    from torch import nn

FIELDS = ["model", "task", "method", "r", "blocks", "heads", "targets", "method_tag", "seed", "adapter_params",
          "status", "run_dir"]


def expand_sweep(overrides: Sequence[str]) -> list[list[str]]:
    """The override list of every job ``python -m bora.train -m <overrides>`` launches, in launch order.

    The same expansion as Hydra's basic sweeper: the experiment's ``hydra.sweeper.params`` first, then the command
    line (a key given on both wins from the command line), cartesian product over comma lists, ``glob()``, ranges.
    """
    params = load_config(overrides, hydra=True).hydra.sweeper.params or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + list(overrides)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
        try:
            parsed = parser.parse_overrides(arguments)
            return BasicSweeper.split_arguments(parsed, None)[0]
        except HydraException as error:
            raise BoraError(f"bad sweep: {str(error).splitlines()[0]}") from error


def _is_group(override: Override) -> bool:
    return (CONF_DIR / override.key_or_group).is_dir()


def compose_jobs(jobs: list[list[str]]) -> list[dict]:
    """The resolved config of every job (``runs.resolved_config(load_config(job))``: what its result.json records).

    Composing costs ~0.2 s a job and Table 1 has 384, so: compose the first job, plus once for every other value of
    each swept config group. Each group's choices change some top-level nodes (``model``, ``task``, ``method``...);
    a job is the first job's config with those nodes swapped in and its value overrides (seed, method.r, ...) set.
    Checked against a full composition of the first and last jobs (same fingerprint); if two groups change the same
    node, an override is not a plain ``key=value``, or the check fails, every job is composed in full.
    """
    parser = OverridesParser.create()
    parsed = [parser.parse_overrides(job) for job in jobs]
    first_job = jobs[0]
    base = OmegaConf.to_container(load_config(first_job))  # unresolved: run_dir stays one interpolation
    variants: dict[str, dict] = {}  # a group override's text -> (unresolved) config of the first job with it
    touched: dict[str, set[str]] = {}  # group key -> top-level nodes its choices change
    for job, overrides in zip(jobs, parsed):
        for index, (text, override) in enumerate(zip(job, overrides)):
            if _is_group(override) and text != first_job[index] and text not in variants:
                variants[text] = OmegaConf.to_container(load_config([*first_job[:index], text, *first_job[index + 1:]]))
                changed = {k for k in base.keys() | variants[text].keys() if base.get(k) != variants[text].get(k)}
                touched.setdefault(override.key_or_group, set()).update(changed)
    nodes = [node for keys in touched.values() for node in keys]
    plain = all(not (o.is_add() or o.is_delete() or o.is_force_add()) for ov in parsed for o in ov if not _is_group(o))
    if len(nodes) == len(set(nodes)) and plain:
        resolve = _Resolver()
        configs = [resolve(_assemble(base, variants, touched, job, overrides)) for job, overrides in zip(jobs, parsed)]
        full = {i: _resolved(load_config(jobs[i])) for i in (0, len(jobs) - 1)}
        if all(runs.fingerprint(configs[i]) == runs.fingerprint(config) for i, config in full.items()):
            return configs
    return [_resolved(load_config(job)) for job in tqdm(jobs, desc="composing", disable=len(jobs) < 20)]


def _resolved(cfg: DictConfig) -> dict:
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)


class _Resolver:
    """Resolves plain configs one after the other in one OmegaConf node, replacing only the top-level nodes that
    changed since the previous config (creating a whole config costs ~15 ms, a sweep's neighbours share most of it).
    Values come out typed as the schema types them (alpha 16 -> 16.0)."""

    def __init__(self):
        self.node: DictConfig | None = None
        self.current: dict = {}

    def __call__(self, config: dict) -> dict:
        if self.node is None:
            self.node = OmegaConf.create(config)
        else:
            for key, value in config.items():
                if self.current.get(key) != value:
                    self.node[key] = value
        self.current = config
        return _typed(_resolved(self.node), Config)


def _typed(values: dict, schema) -> dict:
    """Ints in float fields of the dataclass ``schema`` (recursively) become floats."""
    hints = typing.get_type_hints(schema)
    for field in dataclasses.fields(schema):
        value, hint = values.get(field.name), hints[field.name]
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            _typed(value, hint)
        elif float in (hint, *typing.get_args(hint)) and isinstance(value, int) and not isinstance(value, bool):
            values[field.name] = float(value)
    return values


def _assemble(base: dict, variants: dict, touched: dict, job: list[str], overrides: list[Override]) -> dict:
    config = dict(base)
    for text, override in zip(job, overrides):
        if text in variants:
            config.update({node: variants[text][node] for node in touched[override.key_or_group]})
    for override in overrides:
        if not _is_group(override):
            *parents, leaf = override.key_or_group.split(".")
            node = config
            for parent in parents:  # copy on the way down: the other jobs share these dicts
                node[parent] = dict(node[parent])
                node = node[parent]
            node[leaf] = override.value()
    return config


def run_status(config: dict) -> str:
    result = runs.read_result(Path(config["run_dir"]))
    if result is None:
        return "missing"
    status = result.get("status")
    if status == "success":
        same = result.get("config_fingerprint") == runs.fingerprint(config)
        return "done" if same else "conflict"
    return {"running": "unfinished"}.get(status, str(status))


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
    rows = []
    for config in compose_jobs(expand_sweep(overrides)):
        method = config["method"]
        rows.append({
            "model": config["model"]["name"], "task": config["task"]["name"],
            **{key: method.get(key) for key in ["r", "blocks", "heads", "targets"]}, "method": method["name"],
            "method_tag": Path(config["run_dir"]).parent.name, "seed": config["seed"],
            "adapter_params": count(config) if with_params else None, "status": run_status(config),
            "run_dir": config["run_dir"],
        })
    return rows


def summary(rows: list[dict], name: str) -> str:
    counts = Counter(row["status"] for row in rows)
    order = ["done", "missing", "failed", "unfinished", "conflict"]
    order += sorted(set(counts) - set(order))
    parts = ", ".join(f"{counts[s]} {s}" for s in order if counts[s]) or "nothing"
    return f"{name}: {len(rows)} runs planned: {parts}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. experiment=table2 seed=0")
    parser.add_argument("--summary", action="store_true", help="print only the summary line (to stdout)")
    parser.add_argument("--summaries", metavar="A,B,...", help="the summary line of each of these experiments")
    parser.add_argument("--no-params", action="store_true", help="skip counting adapter parameters")
    args = parser.parse_args(argv)
    try:
        if args.summaries:
            for experiment in args.summaries.split(","):
                rows = plan([f"experiment={experiment}", *args.overrides], with_params=False)
                print(summary(rows, f"experiment={experiment}"), flush=True)
            return
        name = ", ".join(o for o in args.overrides if o.startswith("experiment=")) or "config"
        rows = plan(args.overrides, with_params=not (args.no_params or args.summary))
    except BoraError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    if args.summary:
        print(summary(rows, name))
        return
    writer = csv.DictWriter(sys.stdout, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    print(summary(rows, name), file=sys.stderr)


if __name__ == "__main__":
    main()
