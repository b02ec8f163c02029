"""BoRA replication pipeline: adapters, one shared trainer, per-run result files, paper tables."""

from bora.errors import BoraError

__all__ = ["BoraError"]
__version__ = "0.1.0"
