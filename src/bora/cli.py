"""Config loading for every tool, with one-line errors, and the ``bora`` console entry point.

Hydra reports a bad choice or a misspelt key over several lines; ``load_config`` turns those into one line that
names the value and the choices or the fix. ``preflight`` applies the same check to a command line (every value
of a sweep, and the sweeps an experiment file defines) before Hydra launches anything.
"""

from __future__ import annotations

import sys
from typing import Sequence

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

import bora.config  # noqa: F401  (registers the schema and resolvers)
from bora.errors import BoraError
from bora.paths import CONF_DIR

SWEEP_AXES = ("model", "method", "task", "trainer", "logger", "experiment")
# Hydra flags that take a value: the token after them is not an override.
_FLAGS_WITH_VALUE = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir", "-c", "--cfg", "-p",
                     "--package", "--experimental-rerun"}


def _one_line(error: Exception) -> BoraError:
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, value = error.missing_cfg_file.rpartition("/")
        options = sorted(o for o in (error.options or []) if not o.endswith("_schema"))
        if options:
            return BoraError(f"unknown {group or 'config'} {value!r}; choose one of: {', '.join(options)}")
        return BoraError(f"config {error.missing_cfg_file!r} not found under {CONF_DIR}")
    cause = error.__cause__ if error.__cause__ is not None else error
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        key = cause.full_key
        parent = key.rpartition(".")[0]
        reason = str(cause).splitlines()[0]
        if "not in" in reason or "not in struct" in reason:
            return BoraError(f"unknown config key {key!r} (misspelt? see the keys of '{parent or 'config'}' "
                             f"with --cfg job); {reason}")
        return BoraError(f"bad value for {key!r}: {reason}")
    first = str(error).strip().splitlines()
    return BoraError(first[0] if first else type(error).__name__)


def load_config(overrides: Sequence[str] = (), config_name: str = "config", hydra: bool = False) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides (``hydra=True`` keeps ``cfg.hydra``)."""
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            return compose(config_name, overrides=list(overrides), return_hydra_config=hydra)
    except (ConfigCompositionException, OverrideParseException, OmegaConfBaseException) as error:
        raise _one_line(error) from error


def split_command_line(args: Sequence[str]) -> tuple[list[str], str, bool]:
    """Hydra argv -> (overrides, config name, is_multirun)."""
    overrides, config_name, multirun, skip = [], "config", False, False
    for i, token in enumerate(args):
        if skip:
            skip = False
            continue
        if token in ("-m", "--multirun"):
            multirun = True
        elif token in _FLAGS_WITH_VALUE:
            skip = True
            if token in ("-cn", "--config-name") and i + 1 < len(args):
                config_name = args[i + 1]
        elif token.startswith("-"):
            continue
        else:
            overrides.append(token)
    return overrides, config_name, multirun


def _sweep_variants(overrides: list[str]) -> list[list[str]]:
    """The first combination of a sweep, plus one variant per other value of every swept config group."""
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except OverrideParseException as error:
        raise BoraError(f"bad override: {str(error).splitlines()[0]}") from error
    first, group_values = [], []
    for override, text in zip(parsed, overrides):
        if not override.is_sweep_override():
            first.append(text)
            continue
        values = list(override.sweep_string_iterator())
        key = override.get_key_element()
        first.append(f"{key}={values[0]}")
        if "." not in override.key_or_group:
            group_values += [(len(first) - 1, f"{key}={v}") for v in values[1:]]
    variants = [first]
    for index, text in group_values:
        variant = list(first)
        variant[index] = text
        variants.append(variant)
    return variants


def preflight(args: Sequence[str]) -> None:
    """Compose every distinct choice a command line (and its experiment's sweep) asks for; raise on the first bad one."""
    overrides, config_name, multirun = split_command_line(args)
    variants = _sweep_variants(overrides) if multirun else [overrides]
    for variant in variants:
        cfg = load_config(variant, config_name, hydra=True)
        if not multirun:
            continue
        for group, values in (OmegaConf.select(cfg, "hydra.sweeper.params") or {}).items():
            if group in SWEEP_AXES:
                for value in str(values).split(","):
                    load_config(variant + [f"{group}={value.strip()}"], config_name)


def main() -> None:
    """``bora <tool> [args]``: the same as ``python -m bora.<tool> [args]``."""
    tools = ["train", "params", "plan", "score", "tables", "bench"]
    if len(sys.argv) < 2 or sys.argv[1] not in tools:
        print(f"usage: bora {{{','.join(tools)}}} [hydra overrides or tool options]", file=sys.stderr)
        sys.exit(2)
    tool = sys.argv.pop(1)
    module = __import__(f"bora.{tool}", fromlist=["main"])
    module.main()
