"""BoRA replication pipeline: adapters, one shared trainer, per-run result files, paper tables."""

import logging

from bora.errors import BoraError

# bitsandbytes (model.quantization) warns at import on CPUs with AVX512-BF16 that an optional speed-up package is
# missing, even when nothing is quantized (PEFT and transformers import it whenever it is installed).
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__all__ = ["BoraError"]
__version__ = "0.1.0"
