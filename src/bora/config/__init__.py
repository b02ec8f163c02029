"""The config: typed schema, resolvers, composition with one-line errors, run identity and sweep expansion.

Importing this package registers the schema and the resolvers with Hydra / OmegaConf.
"""

from bora.config.registry import register_configs
from bora.config.schema import (
    Config,
    LoggerConfig,
    MethodConfig,
    ModelConfig,
    TaskConfig,
    TrainerConfig,
)

register_configs()

from bora.config.compose import load_config, resolved  # noqa: E402  (after the schema is registered)

__all__ = [
    "Config",
    "LoggerConfig",
    "MethodConfig",
    "ModelConfig",
    "TaskConfig",
    "TrainerConfig",
    "load_config",
    "resolved",
]
