"""Registers the typed schema (``bora.config.schema``) with Hydra and the resolvers used in conf/ with OmegaConf:
``mul``, ``project_root`` and ``toy_data`` (here, see ``bora.paths``), ``by_protocol`` and ``method_tag``
(``bora.config.resolvers``) and ``run_identity`` (``bora.config.identity``). ``import bora.config`` calls
``register_configs`` once."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from bora.config.identity import run_identity_resolver
from bora.config.resolvers import by_protocol, method_tag
from bora.config.schema import Config
from bora.paths import PROJECT_ROOT, TOY_DATA_DIR


def _mul(a: float, b: float) -> float:
    product = a * b
    return int(product) if float(product).is_integer() else product


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore and register the resolvers used in conf/.

    conf/config.yaml lists `config_schema` first, so every group config is merged onto its typed node.
    """
    OmegaConf.register_new_resolver("mul", _mul, replace=True)
    OmegaConf.register_new_resolver("by_protocol", by_protocol, replace=True)
    OmegaConf.register_new_resolver("method_tag", method_tag, replace=True)
    OmegaConf.register_new_resolver("run_identity", run_identity_resolver, replace=True)
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
    OmegaConf.register_new_resolver("toy_data", lambda: str(TOY_DATA_DIR), replace=True)
    ConfigStore.instance().store(name="config_schema", node=Config)
