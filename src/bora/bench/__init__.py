"""``python -m bora.bench``: training-step time and peak memory of every method, side by side in one process.

(a) single linear layers at realistic widths (4096 -> 4096 as q/o of LLaMA-3-8B, 4096 -> 1024 as its GQA k/v), a
few hundred tokens, input requiring grad as inside a network; (b) a small real-architecture model (random weights,
built from its config's ``arch``) with the paper's targets. A step is forward, backward, AdamW step, zero_grad
(and AdaLoRA's rank allocation). Steps are interleaved round by round in a shuffled order, so machine load hits
every method alike; a ratio is the median over rounds of that round's ratio. Peak memory is the model's tensors
(weights, adapters, optimizer state, the input batch) plus the peak of what one step allocates, counted from the
profiler's allocation events. Also: merged inference against the base model. One torch thread by default: on a
shared machine a second OpenMP thread that gets descheduled stalls every small op and swamps the ratios.

Targets (issue #3): BoRA (r=8, b=16) <= 1.05x LoRA time and <= 1.02x LoRA memory; our LoRA no slower than PEFT's;
merged inference as fast as the base model.

``--device cuda`` times every step between ``torch.cuda.synchronize()`` calls and reads the step's peak from CUDA's
allocator statistics; ``--dtype bf16`` keeps the base weights in bf16 and computes under bf16 autocast, as training
with ``trainer.precision=bf16`` does (adapters stay float32). ``--table4``: the paper's Table 4 on the real
architecture (``bora.bench.table4``); ``--eval``: generation throughput (``bora.bench.generation``); ``--decoding``:
the generation engines side by side (``bora.bench.decoding``); ``--train-path``: BoRA against LoRA through ``bora
train``'s own trainer, step by step (``bora.bench.train_path``); ``--dropout``: what the adapters' dropout costs and
the ways of drawing its mask (``bora.bench.dropout``).

One module per bench mode, all on the shared machinery of ``bora.bench.timing`` (``Runtime``, ``Case``, interleaved
timing, peak memory, reports): ``steps`` (the default bench above), ``table4``, ``generation``, ``decoding``,
``train_path``, ``dropout``, and ``swap`` (adapter sets swapped in and out of one base model, for ``table4`` and
``generation``). ``bora.bench.cli`` holds ``main`` (the options; it imports a mode only when it runs, and no mode
imports it).
"""

from bora.bench.cli import main

__all__ = ["main"]
