"""``bora bench --train-path``: BoRA against LoRA through ``bora train``'s own training step, interleaved step by step.

The other benches time the adapter step alone (forward, backward, AdamW); this one times everything a real run does
around it. Each method gets the trainer ``bora train`` builds (``bora.training.adapt_model`` and ``build_trainer``:
HF's Trainer with AdapterTrainer's loss guards, the adapters' per-step hook (BoRA's LoRA-form cache bookkeeping,
AdaLoRA's allocation), ``StepControl``'s gradient check, our logging; AdamW, the linear schedule, gradient clipping,
the data loader and collator), on the same random-weight model and the same random batches.

The trainers run in threads that take turns one optimizer step at a time (a baton passed in ``on_step_end``), so
load on the machine hits every method alike, step by step. A step's CPU time is its thread's own
(``time.thread_time``: with one torch thread, ATen kernels and CPU autograd run on the calling thread), counted from
the moment the thread takes the baton to the end of its step: fetching and collating the batch, the forward and
backward, clipping, the optimizer and scheduler, the callbacks and the previous step's logging. A ratio is the median
over steps of step i's ratio to LoRA's step i, warm-up steps left out. Last line: ``bora_train_path_cpu_x_lora: X``.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import torch
from transformers import TrainerCallback, default_data_collator, set_seed
from transformers.trainer_callback import PrinterCallback

from bora.adapters import count_adapter_params
from bora.bench.timing import CPU, METHODS, Runtime, arch_overrides
from bora.config import load_config
from bora.config.resolvers import method_tag
from bora.errors import BoraError
from bora.models import build_from_arch

# label -> overrides; LoRA first: the reference of every ratio. BoRA: its default r=8, b=16.
TRAIN_PATH_METHODS = {"lora": METHODS["lora"], "bora": METHODS["bora"]}
TASKS = {"encoder": "cpu/mrpc", "decoder": "cpu/commonsense"}  # the CPU studies' own trainer settings


class Baton:
    """Threads take turns in a fixed rotation: only the holder runs; ``pass_on`` hands it to the next."""

    def __init__(self, names: list[str]):
        self.order = list(names)
        self.holder = self.order[0]
        self.condition = threading.Condition()

    def wait(self, name: str) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.holder == name)

    def pass_on(self, name: str) -> None:
        with self.condition:
            self.holder = self.order[(self.order.index(name) + 1) % len(self.order)]
            self.condition.notify_all()

    def leave(self, name: str) -> None:
        """``name`` is done (or failed): the rotation goes on without it."""
        with self.condition:
            if name not in self.order:
                return
            index = self.order.index(name)
            self.order.remove(name)
            if self.order and self.holder == name:
                self.holder = self.order[index % len(self.order)]
            self.condition.notify_all()


class TakeTurns(TrainerCallback):
    """Times each optimizer step of one trainer, holding the baton from its start to its end."""

    def __init__(self, name: str, baton: Baton):
        self.name, self.baton = name, baton
        self.cpu: list[float] = []
        self.wall: list[float] = []
        self._cpu0 = self._wall0 = 0.0

    def _take(self) -> None:
        self.baton.wait(self.name)
        self._cpu0, self._wall0 = time.thread_time(), time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):
        self._take()

    def on_step_end(self, args, state, control, **kwargs):
        self.cpu.append(time.thread_time() - self._cpu0)
        self.wall.append(time.perf_counter() - self._wall0)
        self.baton.pass_on(self.name)
        self._take()

    def on_train_end(self, args, state, control, **kwargs):
        self.baton.leave(self.name)


class RandomExamples(torch.utils.data.Dataset):
    """Seeded random token rows of one length, all attended; labels: the ids (decoder) or a class (encoder)."""

    def __init__(self, model_cfg, count: int, length: int):
        generator = torch.Generator().manual_seed(0)
        self.ids = torch.randint(5, model_cfg.arch.vocab_size, (count, length), generator=generator)
        self.labels = self.ids if model_cfg.kind == "decoder" else torch.randint(0, 2, (count,), generator=generator)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict:
        return {
            "input_ids": self.ids[index],
            "attention_mask": torch.ones_like(self.ids[index]),
            "labels": self.labels[index],
        }


def _trainer(
    label: str, model_name: str, batch: int, length: int, steps: int, layers: int | None, work_dir: Path, baton: Baton
):
    from bora.training import StepControl, adapt_model, build_trainer, training_arguments

    overrides = [
        f"model={model_name}",
        *arch_overrides(layers),
        "trainer.device=cpu",
        "trainer.precision=fp32",
        "trainer.adapter_dtype=fp32",
        f"trainer.batch_size={batch}",
        f"trainer.max_steps={steps}",
        f"trainer.save_steps={steps + 1}",
        "trainer.torch_threads=1",
    ]
    model_cfg = load_config(overrides).model
    cfg = load_config([*overrides, f"task={TASKS[model_cfg.kind]}", *TRAIN_PATH_METHODS[label]])
    set_seed(cfg.seed)
    model = build_from_arch(cfg.model, num_labels=2 if model_cfg.kind == "encoder" else None)
    if model_cfg.kind == "decoder" and model.config.pad_token_id is None:
        model.config.pad_token_id = 0
    head_modules = list(cfg.model.head_modules) if model_cfg.kind == "encoder" else []
    adapt_model(cfg, model, steps, head_modules)
    args = training_arguments(cfg, work_dir / label, [], "fp32")
    args.disable_tqdm = True  # two trainers' bars would interleave on one terminal
    timer = TakeTurns(label, baton)
    trainer = build_trainer(
        cfg,
        model,
        args,
        RandomExamples(cfg.model, batch * steps, length),
        None,
        default_data_collator,
        [StepControl(), timer],
    )
    trainer.pop_callback(PrinterCallback)  # without a progress bar HF prints every log dict; the table says enough
    return trainer, timer, cfg


def bench_train_path(
    model_name: str = "minilm",
    batch: int = 32,
    length: int = 128,
    rounds: int = 10,
    warmup: int = 2,
    layers: int | None = None,
    runtime: Runtime = CPU,
) -> pd.DataFrame:
    if runtime.device != "cpu":
        raise BoraError(
            "--train-path measures CPU time per thread, on a CPU only: drop --device cuda (on a GPU, "
            "--table4 times the step with synchronised wall time)"
        )
    if runtime.dtype not in (None, "fp32"):
        raise BoraError(f"--train-path trains in fp32 (the CPU studies' precision): drop --dtype {runtime.dtype}")
    torch.set_num_threads(1)  # the per-thread CPU time counts the step's whole work only with one torch thread
    steps = warmup + rounds
    labels = list(TRAIN_PATH_METHODS)
    baton = Baton(labels)
    failures: dict[str, BaseException] = {}
    with tempfile.TemporaryDirectory(prefix="bora-bench-") as tmp:
        built = {label: _trainer(label, model_name, batch, length, steps, layers, Path(tmp), baton) for label in labels}

        def run(label: str) -> None:
            try:
                built[label][0].train()
            except BaseException as error:
                failures[label] = error
            finally:
                baton.leave(label)

        threads = [threading.Thread(target=run, args=(label,), name=f"bench-{label}") for label in labels]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if failures:
        label, error = next(iter(failures.items()))
        raise BoraError(f"--train-path: the {label} trainer failed: {type(error).__name__}: {error}") from error
    return _report(built, labels, model_name, batch, length, warmup, layers)


def _report(
    built: dict, labels: list[str], model_name: str, batch: int, length: int, warmup: int, layers: int | None
) -> pd.DataFrame:
    reference = built[labels[0]][1]
    rows = []
    for label in labels:
        trainer, timer, cfg = built[label]
        cpu, wall = timer.cpu[warmup:], timer.wall[warmup:]
        row = {
            "method": method_tag(cfg.method),
            "steps": len(cpu),
            "cpu ms": 1000 * statistics.median(cpu),
            "step ms": 1000 * statistics.median(wall),
            "adapter params": count_adapter_params(trainer.model),
        }
        row["cpu x lora"] = statistics.median(a / b for a, b in zip(cpu, reference.cpu[warmup:]))
        row["time x lora"] = statistics.median(a / b for a, b in zip(wall, reference.wall[warmup:]))
        rows.append(row)
    frame = pd.DataFrame(rows)
    targets = built[labels[0]][2].method.targets
    shape = f"{model_name}" + (f" ({layers} layers)" if layers else "")
    print(
        f"\n### bora train's own step: {shape}, batch {batch} x {length} tokens, targets {targets}, one torch "
        f"thread, trainers taking turns step by step ({warmup} warm-up steps left out)\n"
    )
    print(frame.to_markdown(index=False, floatfmt=".3f"))
    print(f"\nbora_train_path_cpu_x_lora: {frame['cpu x lora'].iloc[-1]:.3f}")
    return frame
