"""``trainer.compile``: every method trains compiled to the eager run's per-step losses, without a graph-break storm,
evaluates and generates afterwards (on the eager module), and records what compiling cost.

Backends. The method matrix (every ``conf/method`` file on the tiny encoder and the tiny decoder) compiles with
``trainer.compile_backend=aot_eager``: dynamo captures the graph (graph breaks, guards, our ``torch.autograd.Function``s
traced with their hand-written backward) and AOTAutograd functionalises it and splits forward from backward, as with
inductor, but the graph then runs on eager kernels instead of generated code, so a run compiles in 1-4 s. Inductor's
CPU backend generates and builds C++ for forward and backward: on this project's 2-core machine under load, BoRA on the
2-layer tiny encoder compiled for 36-70 s (dynamic sequence lengths: two graphs), the 1-layer fixed-shape run below for
17 s (5 s with inductor's on-disk cache warm), so the matrix would take several minutes; one inductor test (BoRA, the
tiny encoder, the config's default backend) covers code generation.

What matches. Dropout is off everywhere (the adapters' ``method.dropout`` and the tiny encoder's own hidden and
attention dropout): inductor draws random numbers with its own generator, so a dropout mask would differ from
eager's. aot_eager runs eager kernels and matched eager's losses exactly (every step, every method);
inductor reorders and fuses float32 arithmetic (measured: 9e-8 relative). The tolerance is relative 1e-4 for both.

Graph breaks and graphs (torch 2.13, transformers 5.24): 0 breaks for every method on both models, one graph per run
(AdaLoRA: 2, its orthogonality penalty runs in a forward hook of the model). A break inside an adapter layer would
repeat in every adapted layer (2 here on the encoder, 3 on the decoder), and a guard on something that changes per step
would recompile at every step, so ``MAX_GRAPH_BREAKS = 1`` and ``MAX_GRAPHS = 2`` (over 3 steps) catch a storm of
either, while leaving room for one break or recompile somewhere outside our code after an upgrade.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bora.config import load_config
from bora.config.compose import resolved
from bora.config.identity import run_identity
from bora.config.schema import non_identity_keys
from bora.errors import BoraError
from bora.train import train

ROOT = Path(__file__).resolve().parents[1]
METHODS = sorted(path.stem for path in (ROOT / "conf" / "method").glob("*.yaml"))
MODELS = {
    # max_length 16 cuts every toy sentence, so every batch has one shape (no recompilation for dynamic shapes)
    "tiny-encoder": [
        "model=tiny-encoder",
        "task=toy-cls",
        "task.max_length=16",
        "++model.arch.num_hidden_layers=1",
        "++model.arch.hidden_dropout_prob=0.0",
        "++model.arch.attention_probs_dropout_prob=0.0",
    ],
    "tiny-decoder": [
        "model=tiny-decoder",
        "task=toy-math",
        "task.max_new_tokens=4",
        "++model.arch.num_hidden_layers=1",
    ],
}
FAST = [
    "trainer.max_steps=3",
    "trainer.logging_steps=1",
    "task.max_train_samples=48",
    "task.max_eval_samples=4",
    "method.dropout=0",
    "save_adapter=false",
]
MAX_GRAPH_BREAKS = 1
MAX_GRAPHS = 2
REL = 1e-4


def run(output_dir: Path, model: str, method: str, *extra: str) -> tuple[dict, Path]:
    cfg = load_config([*MODELS[model], f"method={method}", *FAST, f"output_dir={output_dir}", *extra])
    train(cfg)
    return json.loads((Path(cfg.run_dir) / "result.json").read_text()), Path(cfg.run_dir)


def assert_same_steps(eager: dict, compiled: dict) -> None:
    steps = [(e["step"], c["step"]) for e, c in zip(eager["train"]["loss_history"], compiled["train"]["loss_history"])]
    assert len(steps) == 3 and all(a == b for a, b in steps)
    for e, c in zip(eager["train"]["loss_history"], compiled["train"]["loss_history"]):
        assert c["loss"] == pytest.approx(e["loss"], rel=REL), (e, c)
        assert c["grad_norm"] == pytest.approx(e["grad_norm"], rel=REL), (e, c)


def assert_compile_recorded(result: dict, backend: str) -> None:
    info = result["train"]["compile"]
    assert result["config"]["trainer"]["compile"] is True and result["config"]["trainer"]["compile_backend"] == backend
    assert info["backend"] == backend and info["mode"] is None
    assert info["graph_breaks"] <= MAX_GRAPH_BREAKS, info["break_reasons"]
    assert 1 <= info["graphs"] <= MAX_GRAPHS, info
    assert info["compile_s"] > 0 and info["first_step_s"] > 0 and info["later_step_s"] > 0


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("method", METHODS)
def test_compiled_training_matches_eager_and_evaluates_after(tmp_path, model, method):
    eager, eager_dir = run(tmp_path / "eager", model, method)
    compiled, compiled_dir = run(
        tmp_path / "compiled", model, method, "trainer.compile=true", "trainer.compile_backend=aot_eager"
    )
    assert eager["status"] == compiled["status"] == "success"
    assert_same_steps(eager, compiled)
    assert_compile_recorded(compiled, "aot_eager")
    assert eager["train"]["compile"] is None
    assert compiled["identity"] == eager["identity"]  # compiling is not part of what a run computes
    # evaluation (and for the decoder, generation) ran afterwards, on the eager module: the same metrics, the same text
    assert compiled["metrics"] == eager["metrics"]
    predictions = (
        sorted(p.relative_to(eager_dir) for p in (eager_dir / "predictions").glob("*.jsonl"))
        if (eager_dir / "predictions").is_dir()
        else []
    )
    assert bool(predictions) == (model == "tiny-decoder")
    for path in predictions:
        assert (compiled_dir / path).read_text() == (eager_dir / path).read_text()


def test_inductor_compiled_bora_matches_eager(tmp_path):
    eager, _ = run(tmp_path / "eager", "tiny-encoder", "bora")
    compiled, _ = run(tmp_path / "compiled", "tiny-encoder", "bora", "trainer.compile=true")  # the default backend
    assert_same_steps(eager, compiled)
    assert_compile_recorded(compiled, "inductor")
    assert compiled["train"]["compile"]["graph_breaks"] == 0 and compiled["metrics"] == eager["metrics"]


def test_compile_settings_are_not_part_of_the_identity():
    assert {"trainer.compile", "trainer.compile_mode", "trainer.compile_backend"} <= non_identity_keys()
    plain = resolved(load_config([]))
    compiled = resolved(
        load_config(["trainer.compile=true", "trainer.compile_mode=max-autotune", "trainer.compile_backend=aot_eager"])
    )
    assert run_identity(plain) == run_identity(compiled)


def test_compile_settings_map_onto_hf_and_bad_ones_fail_before_training(tmp_path):
    from bora.training import training_arguments

    off = training_arguments(load_config([]), tmp_path, [], "fp32")
    assert off.torch_compile is False
    on = training_arguments(
        load_config(["trainer.compile=true", "trainer.compile_mode=reduce-overhead"]), tmp_path, [], "fp32"
    )
    assert on.torch_compile and on.torch_compile_backend == "inductor" and on.torch_compile_mode == "reduce-overhead"
    with pytest.raises(BoraError, match="trainer.compile_mode=fast"):
        load_config(["trainer.compile_mode=fast"])
    with pytest.raises(BoraError, match="trainer.compile_backend='nope' is not a torch.compile backend"):
        training_arguments(load_config(["trainer.compile=true", "trainer.compile_backend=nope"]), tmp_path, [], "fp32")


def test_wide_block_form_compiles_without_graph_breaks():
    """The block form writes wide blocks into column slices with out=, which dynamo cannot trace; under compile it
    takes the batched form (bora.adapters.blocks._per_block), so no adapted layer breaks the graph."""
    # blocks 128 wide: the per-block path real models take on a CPU (LLaMA-3-8B's q_proj at b=16, MELoRA's 4 blocks
    # of RoBERTa-base); the tiny models' blocks are narrower, and GPUs train through the LoRA form instead
    import torch
    from torch import nn
    from torch._dynamo.utils import counters

    from bora.adapters.bora import BoraLayer

    torch._dynamo.reset()
    counters.clear()
    layer = BoraLayer(nn.Linear(256, 256), r=4, alpha=8, dropout=0.0, blocks=2)
    layer.base_layer.requires_grad_(False)
    torch.compile(layer, backend="aot_eager")(torch.randn(8, 256, requires_grad=True)).sum().backward()
    breaks = dict(counters["graph_break"])
    torch._dynamo.reset()
    assert not breaks, sorted(reason.splitlines()[0] for reason in breaks)
