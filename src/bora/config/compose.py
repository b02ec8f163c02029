"""Compose a config the way ``python -m bora.train`` does, with one-line errors, and check its ranges.

Hydra reports a bad choice or a misspelt key over several lines; ``load_config`` turns those into one line that
names the value and the choices or the fix, then resolves the config and checks every range of the schema
(``bora.config.schema.validate``), so a bad value stops every tool in seconds, before data or weights load.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException

from bora.config.schema import unknown_key_error, validate
from bora.errors import BoraError
from bora.paths import CONF_DIR


def one_line(error: Exception) -> BoraError:
    """A Hydra / OmegaConf composition error as one line naming the key, the value and the choices or the fix."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, value = error.missing_cfg_file.rpartition("/")
        options = sorted(o for o in (error.options or []) if not o.endswith("_schema"))
        if options:
            return BoraError(f"unknown {group or 'config'} {value!r}; choose one of: {', '.join(options)}")
        return BoraError(f"config {error.missing_cfg_file!r} not found under {CONF_DIR}")
    cause = error.__cause__ if error.__cause__ is not None else error
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        key = cause.full_key
        reason = str(cause).splitlines()[0]
        if isinstance(cause, MissingMandatoryValue):
            return BoraError(f"missing value for {key!r}: set it on the command line ({key}=...)")
        if "not in" in reason or "not in struct" in reason:
            return unknown_key_error(key)
        return BoraError(f"bad value for {key!r}: {reason}")
    text = str(error)
    unparsed = re.match(r"LexerNoViableAltException: (.*)", text.strip())
    if isinstance(error, OverrideParseException) and unparsed:
        key, _, value = unparsed.group(1).partition("=")
        return BoraError(
            f"cannot parse the override {unparsed.group(1)!r}: unquoted values take only plain ASCII "
            f"characters; quote it, e.g. \"{key}='{value}'\" in a shell"
        )
    typo = re.search(r"Key '[^']*' not in '[^']*'\s+full_key: (\S+)", text)
    if typo:  # a misspelt key inside a config file (an experiment's ``trainer: {lrr: ...}``): name it and the file
        source = re.match(r"In '([^']+)'", text)
        where = f" in {source.group(1)}.yaml (under conf/ or the search path)" if source else ""
        return unknown_key_error(typo.group(1), where)
    first = text.strip().splitlines()
    return BoraError(first[0] if first else type(error).__name__)


def resolved(cfg: DictConfig) -> dict:
    """The config as plain, resolved values (choices as strings), without Hydra's own node."""
    try:
        return {
            key: (
                OmegaConf.to_container(cfg[key], resolve=True, throw_on_missing=True, enum_to_str=True)
                if OmegaConf.is_config(cfg[key])
                else cfg[key]
            )
            for key in cfg.keys()
            if key != "hydra"
        }
    except (InterpolationResolutionError, MissingMandatoryValue, OmegaConfBaseException) as error:
        raise one_line(error) from None


def load_config(overrides: Sequence[str] = (), config_name: str = "config", hydra: bool = False) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with command-line style overrides (``hydra=True`` keeps ``cfg.hydra``),
    resolve it and check its ranges; any problem is one ``BoraError`` line."""
    try:
        with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=hydra)
    except (ConfigCompositionException, OverrideParseException, OmegaConfBaseException) as error:
        raise one_line(error) from None
    if config_name == "config":
        validate(resolved(cfg))
    return cfg


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


# Hydra flags that take a value: the token after them is not an override.
_FLAGS_WITH_VALUE = {
    "-cn",
    "--config-name",
    "-cp",
    "--config-path",
    "-cd",
    "--config-dir",
    "-c",
    "--cfg",
    "-p",
    "--package",
    "--experimental-rerun",
}
