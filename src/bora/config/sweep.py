"""Sweeps: the jobs ``python -m bora.train -m ...`` launches, their resolved configs, and the start-up check.

``expand_sweep`` lists every job's overrides exactly as Hydra's basic sweeper does; ``compose_jobs`` resolves their
configs quickly (a Table 1 sweep has 384 jobs); ``preflight`` composes enough of them to check every value of every
swept key before anything is launched.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

from hydra import initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the sweeper `-m` uses: the same expansion
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from bora.config.compose import load_config, resolved, split_command_line
from bora.config.identity import run_identity
from bora.config.schema import Config, check_pairings
from bora.errors import BoraError
from bora.paths import CONF_DIR


def _parse(arguments: list[str]) -> list[Override]:
    parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
    try:
        return parser.parse_overrides(arguments)
    except HydraException as error:
        raise BoraError(f"bad override: {str(error).splitlines()[0]}") from None


def _first_values(overrides: list[str]) -> list[str]:
    """The overrides with every sweep (``a,b``, ``range()``, ``glob()``) replaced by its first value."""
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        parsed = _parse(list(overrides))
        first = []
        for text, override in zip(overrides, parsed):
            if override.is_sweep_override():
                values = BasicSweeper.split_arguments([override], None)[0]
                first.append(values[0][0])
            else:
                first.append(text)
    return first


def expand_sweep(overrides: Sequence[str], config_name: str = "config") -> list[list[str]]:
    """The override list of every job ``python -m bora.train -m <overrides>`` launches, in launch order.

    The same expansion as Hydra's basic sweeper: the experiment's ``hydra.sweeper.params`` first, then the command
    line (a key given on both wins from the command line), cartesian product over comma lists, ``glob()``, ranges.
    """
    overrides = list(overrides)
    params = load_config(_first_values(overrides), config_name, hydra=True).hydra.sweeper.params or {}
    arguments = [f"{key}={value}" for key, value in params.items()] + overrides
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        parsed = _parse(arguments)
        try:
            return BasicSweeper.split_arguments(parsed, None)[0]
        except HydraException as error:
            raise BoraError(f"bad sweep: {str(error).splitlines()[0]}") from None


def preflight(args: Sequence[str]) -> DictConfig:
    """Compose enough of the jobs a command line launches that every value of every swept key is checked once;
    raise the first problem as one line. Run before Hydra launches anything. Returns the first job's config, with
    its ``hydra`` node (where the run or the sweep will write)."""
    overrides, config_name, multirun = split_command_line(args)
    if not multirun:
        return _checked(load_config(overrides, config_name, hydra=True), config_name)
    jobs = expand_sweep(overrides, config_name) or [list(overrides)]
    first = _checked(load_config(jobs[0], config_name, hydra=True), config_name)
    if first.hydra.launcher.get("n_jobs") == 0:
        raise BoraError(
            "bad value hydra.launcher.n_jobs=0: must be >= 1 (runs side by side) or negative (joblib's "
            "count back from every CPU: -1 = all)"
        )
    covered: set[str] = set(jobs[0])
    for job in jobs[1:]:
        if set(job) - covered:
            _checked(load_config(job, config_name), config_name)
            covered |= set(job)
    return first


def _checked(cfg: DictConfig, config_name: str) -> DictConfig:
    """A whole job's config, its values checked together too (``check_pairings``)."""
    if config_name == "config":
        check_pairings(resolved(cfg))
    return cfg


class KeepSweepConfig(Callback):
    """Hydra saves each sweep's config as ``<sweep dir>/multirun.yaml``, one file for every sweep of an experiment
    folder, so of two sweeps started together one config is lost. Each sweep also saves its own copy,
    ``multirun.<UTC start time>-<pid>.yaml``, before any job starts (``hydra.callbacks`` in conf/config.yaml)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H%M%S.%f")
        OmegaConf.save(config, sweep_dir / f"multirun.{stamp}-{os.getpid()}.yaml")


def keep_previous_multirun_yaml(sweep_dir: Path) -> Path | None:
    """Hydra writes every sweep's ``multirun.yaml`` to the same place in an experiment folder, so a second sweep
    there (concurrent or later) would overwrite the first one's: keep it as ``multirun.<its time>.yaml``."""
    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return None
    stamp = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%dT%H%M%S.%f")
    kept = path.with_name(f"multirun.{stamp}.yaml")
    os.replace(path, kept)
    return kept


def _is_group(override: Override) -> bool:
    return (CONF_DIR / override.key_or_group).is_dir()


def compose_jobs(jobs: list[list[str]]) -> list[dict]:
    """The resolved config of every job (``resolved(load_config(job))``: what its result.json records).

    Composing costs ~0.2 s a job and Table 1 has 384, so: compose the first job, plus once for every other value of
    each swept config group. Each group's choices change some top-level nodes (``model``, ``task``, ``method``...);
    a job is the first job's config with those nodes swapped in and its value overrides (seed, method.r, ...) set.
    Checked against a full composition of the first and last jobs (same identity); if two groups change the same
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
                variants[text] = OmegaConf.to_container(
                    load_config([*first_job[:index], text, *first_job[index + 1 :]])
                )
                changed = {k for k in base.keys() | variants[text].keys() if base.get(k) != variants[text].get(k)}
                touched.setdefault(override.key_or_group, set()).update(changed)
    nodes = [node for keys in touched.values() for node in keys]
    plain = all(not (o.is_add() or o.is_delete() or o.is_force_add()) for ov in parsed for o in ov if not _is_group(o))
    if len(nodes) == len(set(nodes)) and plain:
        resolve = _Resolver()
        configs = [resolve(_assemble(base, variants, touched, job, overrides)) for job, overrides in zip(jobs, parsed)]
        full = {i: resolved(load_config(jobs[i])) for i in (0, len(jobs) - 1)}
        if all(
            run_identity(configs[i]) == run_identity(config) and configs[i]["run_dir"] == config["run_dir"]
            for i, config in full.items()
        ):
            return configs
    return [resolved(load_config(job)) for job in tqdm(jobs, desc="composing", disable=len(jobs) < 20)]


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
        return _typed(resolved(self.node), Config)


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
