#!/usr/bin/env bash
# GPU check. First (issue 34 item 7) the shared trainer end to end on the card: `bora train` of BoRA on the tiny
# decoder and on a 2-layer, random-weight model of LLaMA-3-8B's shape (4096 wide, its 128k vocabulary), both in bf16
# with bf16 adapters, 4 steps of the math task's code path on the toy data and the generation of 8 questions;
# scripts/gpu_train_check.py then checks each record: success, bf16 training and adapters, the GPU's peak memory, the
# generation engine, the card's name. Then the benchmarks (issue 12 item 6): the paper's Table 4 on LLaMA-3-8B's
# architecture with random weights (step time and peak memory at batch 4 x 256 tokens, bf16: LoRA, BoRA b=8 / b=16,
# MELoRA, HydraLoRA, DoRA, PEFT's DoRA, ratios to LoRA beside the paper's), then generation throughput (LoRA, BoRA
# training form, BoRA LoRA form, merged), then whether continuous batching decodes what padded batches do on the GPU
# (scripts/gpu_decoding_check.py), after a check that BoRA's two training forms agree on the device and that the
# operator counter sees the device's backward, and last Table 4 eager beside torch.compile (issue 22: `bora bench
# --table4 --compile` on 4 of LLaMA-3-8B's 32 layers, batch 4 x 256: compiled / eager step time per method, compile
# time, graph breaks). No hub, no weights to download.
# Measured before the trainer step and the compiled step (30 Table 4 rounds, 5 / 3 --eval rounds): 4.4 minutes on an
# H200, 5.7 on an H100 (results/gpu-check/); the trainer step and the compiled step are not measured on a GPU yet. The
# steps are capped at 100 s (the trainer: 30 + 60 + 10), 30, 30, 100, 100, 100 and 100 s (560 s, 9.3 minutes: a
# device call may run 10); the compiled step prints a line per method as it finishes, so a cap still leaves those.
#
# Needs a CUDA build of torch plus transformers, peft and accelerate (a GPU machine may have only those) and this
# checkout. Beyond those, `python -m bora.bench` and `bora.train` import hydra-core (with omegaconf and
# antlr4-python3-runtime), pandas (with python-dateutil), tabulate (for pandas' to_markdown), datasets, evaluate and
# pydantic. The script pip-installs whichever of them is missing, or stops with one line when it cannot (no network).
# bora itself runs from the checkout (PYTHONPATH=src): nothing to build, as `pip install --no-deps -e .` would need
# setuptools from the network.
#
# Usage: scripts/gpu_check.sh [OUT_DIR]   (default: $OUT, else outputs/gpu-check). Writes OUT_DIR/gpu_check.log;
# exits non-zero when a step failed or ran past its cap. Knobs: PYTHON (default python), ROUNDS (Table 4 timed
# rounds, default 15), EVAL_ROUNDS (default 3), COMPILE_ROUNDS (default 10), COMPILE_LAYERS (default 4),
# TRAIN_PRECISION (default bf16), LLAMA_EXTRA (overrides of the LLaMA-shaped run), ONLY_TRAIN=1 (stop after the
# trainer step). A dry run of the trainer step on a CPU (about 40 s on 2 cores; tests/test_gpu_check_script.py):
#   DEVICE=cpu TRAIN_PRECISION=fp32 ONLY_TRAIN=1 LLAMA_EXTRA="model.arch.hidden_size=64 model.arch.intermediate_size=128
#   model.arch.vocab_size=512" scripts/gpu_check.sh
# and of the whole script:
#   DEVICE=cpu TRAIN_PRECISION=fp32 LLAMA_EXTRA="..." EXTRA="--model tiny-decoder --layers 1 --batch 1 --length 16
#   --new-tokens 4" scripts/gpu_check.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$REPO/outputs/gpu-check}}"
PYTHON="${PYTHON:-python}"
ROUNDS="${ROUNDS:-15}"
EVAL_ROUNDS="${EVAL_ROUNDS:-3}"
COMPILE_ROUNDS="${COMPILE_ROUNDS:-10}"
COMPILE_LAYERS="${COMPILE_LAYERS:-4}"
DEVICE="${DEVICE:-cuda}"
TRAIN_PRECISION="${TRAIN_PRECISION:-bf16}"
read -r -a EXTRA <<<"${EXTRA:-}"
read -r -a LLAMA_EXTRA <<<"${LLAMA_EXTRA:-}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
: > "$LOG"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
cd "$REPO"

# module -> the pip requirement that provides it (versions as in pyproject.toml)
declare -A NEEDED=([hydra]="hydra-core>=1.3.2" [omegaconf]="omegaconf>=2.3" [pandas]="pandas>=2.0"
                   [tabulate]="tabulate>=0.9" [datasets]="datasets>=3.0" [evaluate]="evaluate>=0.4"
                   [pydantic]="pydantic>=2" [safetensors]="safetensors")
missing=()
for module in "${!NEEDED[@]}"; do
  "$PYTHON" -c "import $module" 2>/dev/null || missing+=("${NEEDED[$module]}")
done
if ((${#missing[@]})); then
  echo "installing ${missing[*]}" | tee -a "$LOG"
  # keep the machine's numpy (torch was built against it): pip picks a pandas that works with it
  numpy_pin=$("$PYTHON" -c "import numpy; print('numpy==' + numpy.__version__)" 2>/dev/null || true)
  if ! "$PYTHON" -m pip install -q "${missing[@]}" $numpy_pin >>"$LOG" 2>&1; then
    echo "error: pip could not install ${missing[*]} (no network?); install them on this machine, then rerun" \
      | tee -a "$LOG" >&2
    exit 1
  fi
fi

failed=0
run() {  # run <seconds> <command...>: echo it, run it with a time cap, keep its output in the log
  local limit="$1" start=$SECONDS status=0; shift
  echo "\$ $*" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG" || status=$?
  echo "(exit $status, $((SECONDS - start)) s)" | tee -a "$LOG"
  ((status == 0)) || failed=1
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
  "$PYTHON" -c "import torch, transformers, peft, accelerate as acc
print('torch', torch.__version__, 'cuda', torch.version.cuda, '| transformers', transformers.__version__,
      '| peft', peft.__version__, '| accelerate', acc.__version__)"
  git log -1 --format='commit %h %s' 2>/dev/null || true
} 2>&1 | tee -a "$LOG"

# The shared trainer on the card: BoRA on the tiny decoder and on LLaMA-3-8B's shape (2 of its 32 layers, random
# weights, the byte tokenizer), bf16 base, bf16 autocast and bf16 adapters, 4 steps, 8 questions decoded
TRAIN_DIR="$OUT_DIR/train"
rm -rf "$TRAIN_DIR"
dtype=$([ "$TRAIN_PRECISION" = bf16 ] && echo bfloat16 || echo float32)
TRAIN=(-m bora.train task=toy-math method=bora logger=none save_adapter=false experiment_name=gpu-check
  "output_dir=$TRAIN_DIR" "trainer.device=$DEVICE" "trainer.precision=$TRAIN_PRECISION"
  "trainer.adapter_dtype=$TRAIN_PRECISION" "model.dtype=$dtype" trainer.max_steps=4 trainer.batch_size=4
  trainer.logging_steps=1 task.max_eval_samples=8 task.max_new_tokens=8 trainer.eval_batch_size=4)
run 30 "$PYTHON" "${TRAIN[@]}" model=tiny-decoder
run 60 "$PYTHON" "${TRAIN[@]}" model=llama-3-8b model.path=null model.tokenizer=byte model.init_seed=0 \
  model.arch.num_hidden_layers=2 model.arch.bos_token_id=1 model.arch.eos_token_id=2 +model.arch.pad_token_id=0 \
  ${LLAMA_EXTRA[@]+"${LLAMA_EXTRA[@]}"}
run 10 "$PYTHON" scripts/gpu_train_check.py "$TRAIN_DIR" "$DEVICE" "$TRAIN_PRECISION"
if [ "${ONLY_TRAIN:-0}" = 1 ]; then
  echo "log: $LOG"
  exit "$failed"
fi

# BoRA and MELoRA train through the rank-b r LoRA form on a GPU (bora.adapters.blocks): the same outputs and
# gradients as the block form, checked here in float32 on the device (the tests check it on a CPU)
run 30 "$PYTHON" - "$DEVICE" <<'PY'
import sys, torch
from torch import nn
from bora.adapters import blocks
from bora.adapters.bora import BoraLayer
from bora.adapters.melora import MeloraLayer
device = sys.argv[1]
for cls, extra in ((BoraLayer, {}), (MeloraLayer, {"name": "melora"})):
    torch.manual_seed(0)
    layer = cls(nn.Linear(1024, 512), r=8, alpha=16, dropout=0.0, blocks=8, **extra).to(device)
    with torch.no_grad():
        for p in (layer.A, layer.B, *([layer.sigma] if cls is BoraLayer else [])):
            p.normal_(0, 0.1)
    x = torch.randn(4, 64, 1024, device=device)
    runs = []
    for form in ("lora-form", "block"):
        blocks.LORA_FORM_DEVICES = {device} if form == "lora-form" else set()
        layer.zero_grad()
        xi = x.clone().requires_grad_()
        out = layer(xi)
        out.square().sum().backward()
        runs.append([out, xi.grad] + [p.grad for _, p in layer.named_parameters() if p.requires_grad])
    worst = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(*runs))
    print(f"{cls.__name__}: lora form vs block form on {device}, largest relative difference {worst:.2e}")
    assert worst < 1e-5, cls.__name__
PY
# The operator counter (a TorchDispatchMode) must see what the device runs: on CUDA, backward runs on the autograd
# engine's own device thread, so a mode that did not reach that thread would count no backward operators there. One
# layer-step of each method in the LoRA form, fp32 (no autocast: its cast policy differs between devices), counted on
# the CPU and on the device: forward and backward must agree (AdamW differs: foreach on a GPU).
run 30 "$PYTHON" - "$DEVICE" <<'PY'
import sys, torch
from torch import nn
from bora.adapters import blocks
from bora.adapters.bora import BoraLayer
from bora.adapters.lora import LoraLayer
from bora.adapters.melora import MeloraLayer
from bora.bench.timing import CPU, Runtime, layer_ops_per_step
device = sys.argv[1]
for cls, extra in ((LoraLayer, {}), (BoraLayer, {"blocks": 16}), (MeloraLayer, {"blocks": 4})):
    torch.manual_seed(0)
    layer = cls(nn.Linear(1024, 512), r=8, alpha=16, dropout=0.05, **extra)
    with blocks.lora_form_on("cpu"):
        on_cpu = layer_ops_per_step(layer, CPU)
        on_device = layer_ops_per_step(layer.to(device), Runtime(device))
    print(f"{cls.__name__}: operators per layer-step on cpu {on_cpu}, on {device} {on_device}")
    assert on_device["backward"] > 0, f"{cls.__name__}: no backward operator counted on {device}"
    assert all(on_cpu[phase] == on_device[phase] for phase in ("forward", "backward")), cls.__name__
PY
# --lora-form: BoRA and MELoRA train through the LoRA form, as on every GPU (there the flag changes nothing; a CPU dry
# run takes the GPU's code path too); the table of operators per adapted layer-step is then counted on the device
run 100 "$PYTHON" -m bora.bench --table4 --lora-form --device "$DEVICE" --dtype bf16 --rounds "$ROUNDS" --warmup 3 \
  ${EXTRA[@]+"${EXTRA[@]}"}
run 100 "$PYTHON" -m bora.bench --eval --model llama-3-8b --device "$DEVICE" --dtype bf16 --batch 4 --length 128 \
  --new-tokens 64 --rounds "$EVAL_ROUNDS" --warmup 1 ${EXTRA[@]+"${EXTRA[@]}"}
run 100 "$PYTHON" scripts/gpu_decoding_check.py --device "$DEVICE" --new-tokens 32
# Table 4 eager beside torch.compile (inductor, default mode), last: compiling a method's forward and backward takes
# the longest and is the least known; on COMPILE_LAYERS of the 32 layers (compile time grows with the layers traced),
# each method on a fresh dynamo state with its eager and compiled steps interleaved. Last line
# bora_compiled_time_x_eager: X
run 100 "$PYTHON" -m bora.bench --table4 --compile --lora-form --device "$DEVICE" --dtype bf16 \
  --layers "$COMPILE_LAYERS" --rounds "$COMPILE_ROUNDS" --warmup 2 ${EXTRA[@]+"${EXTRA[@]}"}
echo "log: $LOG"
exit "$failed"
