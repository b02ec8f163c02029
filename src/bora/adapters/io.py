"""Save and load adapters: one safetensors file plus a JSON config, exact to the bit.

The file holds every adapter tensor (trainable factors and the buffers that define an adapter, e.g. SBoRA's indices),
every other parameter with ``requires_grad=True`` (the task head), and for AdaLoRA the rank allocator's state, so the
trainer can resume from it. Both files are written to temporary names first and then renamed: a run killed while
checkpointing never leaves a half-written adapter behind. What a PEFT tuner adds (its config, AdaLoRA's state) comes
from ``bora.adapters.peft_method``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from bora.adapters import peft_method
from bora.adapters.base import plain_dict
from bora.adapters.inject import adapter_layers, has_adapters, inject_modules
from bora.adapters.registry import METHODS
from bora.errors import BoraError
from bora.integrity import safetensors_problem

CONFIG_FILE = "bora_adapter.json"
WEIGHTS_FILE = "bora_adapter.safetensors"
FORMAT = "bora-adapter/1"


def adapted_module_names(model: nn.Module) -> list[str]:
    return [name for name, _ in adapter_layers(model)] + [name for name, _ in peft_method.peft_layers(model)]


def saved_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """Name -> tensor of everything ``save_adapters`` writes (see the module docstring)."""
    tensors = {name: p for name, p in model.named_parameters() if p.requires_grad}
    for layer_name, layer in adapter_layers(model):
        own = [*layer.named_parameters(), *layer.named_buffers()]
        tensors.update({f"{layer_name}.{n}": t for n, t in own if not n.startswith("base_layer.")})
    tensors.update(peft_method.adapter_tensors(model, trainable_only=False))
    return tensors


def save_adapters(model: nn.Module, directory: str | os.PathLike, method_cfg) -> None:
    if not has_adapters(model):
        raise BoraError(f"{type(model).__name__} has no adapters to save (merged already, or never injected)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().cpu().contiguous() for name, t in saved_tensors(model).items()}
    peft_tensors, peft_fields = peft_method.saved_state(model)
    tensors.update({name: t.cpu() for name, t in peft_tensors.items()})
    config = {"format": FORMAT, "method": plain_dict(method_cfg), "modules": adapted_module_names(model), **peft_fields}
    _write_atomic(directory / WEIGHTS_FILE, lambda path: save_file(tensors, str(path), metadata={"format": FORMAT}))
    _write_atomic(directory / CONFIG_FILE, lambda path: path.write_text(json.dumps(config, indent=2) + "\n"))


def load_adapters(model: nn.Module, directory: str | os.PathLike) -> list[str]:
    """Load saved adapters into ``model``: a base model gets exactly the saved adapters injected first; a model that
    already has them must have the same method and modules. Strict: any missing or unexpected tensor is an error.
    Adapter tensors keep the dtype they were saved in (``trainer.adapter_dtype``), so the loaded layers compute what
    the trained ones did."""
    directory = Path(directory)
    config, tensors = read_adapter(directory)
    method_cfg = method_config(config["method"])
    names = list(config["modules"])
    if not has_adapters(model):
        inject_modules(model, method_cfg, names, peft_config=peft_method.saved_config(config))
    else:
        _check_same_adapters(model, method_cfg, names, directory)
    state_tensors = peft_method.pop_state(tensors)
    targets = saved_tensors(model)
    missing = sorted(set(targets) - set(tensors))
    if missing:
        raise BoraError(f"{directory / WEIGHTS_FILE} lacks {len(missing)} tensor(s) of this model, e.g. {missing[0]!r}")
    parameters = dict(model.named_parameters())
    extra = sorted(k for k in tensors if k not in targets and k not in parameters)
    if extra:
        raise BoraError(f"{directory / WEIGHTS_FILE} holds {len(extra)} tensor(s) this model lacks, e.g. {extra[0]!r}")
    with torch.no_grad():
        for name, value in tensors.items():
            target = targets.get(name, parameters.get(name))
            if target.shape != value.shape:
                raise BoraError(
                    f"{directory / WEIGHTS_FILE}: {name} has shape {tuple(value.shape)}, "
                    f"the model expects {tuple(target.shape)}"
                )
            if name in targets and target.is_floating_point() and target.dtype != value.dtype:
                # trained with trainer.adapter_dtype=bf16: the layer casts its input to its parameters' dtype, so
                # float32 copies of the same values would compute a different update than the one trained
                target.data = value.to(target.device)
            else:
                target.copy_(value)
    peft_method.load_state(model, state_tensors, config)
    return names


def read_adapter(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not config_path.is_file() or not weights_path.is_file():
        raise BoraError(f"{directory} is not a saved adapter (needs {CONFIG_FILE} and {WEIGHTS_FILE})")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise BoraError(
            f"{config_path}: not a readable adapter config ({str(error).splitlines()[0]}); the adapter "
            "was cut off while being written: export it again from its run"
        ) from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        found = config.get("format") if isinstance(config, dict) else type(config).__name__
        raise BoraError(f"{config_path}: unknown format {found!r} (expected {FORMAT})")
    problem = safetensors_problem(weights_path)
    if problem:
        raise BoraError(
            f"{weights_path}: {problem}; the adapter was cut off while being written: train or export it again"
        )
    return config, load_file(str(weights_path))


def method_config(saved: dict[str, Any]):
    """The saved method config as a typed ``MethodConfig`` node (attribute access, schema-checked)."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from bora.config.schema import MethodConfig

    try:
        return OmegaConf.merge(OmegaConf.structured(MethodConfig), saved)
    except OmegaConfBaseException as error:
        raise BoraError(f"saved method config does not fit this version's schema: {error}".splitlines()[0]) from error


def _check_same_adapters(model: nn.Module, method_cfg, names: list[str], directory: Path) -> None:
    present = adapted_module_names(model)
    if sorted(present) != sorted(names):
        raise BoraError(
            f"{directory}: saved adapters are on {len(names)} module(s), this model has them on "
            f"{len(present)} different one(s); load into a fresh base model instead"
        )
    if peft_method.is_peft(method_cfg):
        if peft_method.tuner_of(model) is None:
            raise BoraError(f"{directory} holds a PEFT adapter but the model has bora adapters")
        return
    expected = METHODS[method_cfg.name]
    wrong = [name for name, layer in adapter_layers(model) if type(layer) is not expected]
    if wrong:
        raise BoraError(
            f"{directory} holds method {method_cfg.name!r} but {wrong[0]} is a "
            f"{type(model.get_submodule(wrong[0])).__name__}"
        )


def _write_atomic(path: Path, write) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)
