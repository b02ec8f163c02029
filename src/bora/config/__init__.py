"""Structured-config schema and OmegaConf resolvers. Importing this module registers both."""

from bora.config.schema import (
    Config,
    LoggerConfig,
    MethodConfig,
    ModelConfig,
    TaskConfig,
    TrainerConfig,
    register_configs,
)

register_configs()

__all__ = ["Config", "LoggerConfig", "MethodConfig", "ModelConfig", "TaskConfig", "TrainerConfig"]
