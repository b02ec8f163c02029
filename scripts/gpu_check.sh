#!/usr/bin/env bash
# GPU check (issue 12 item 6): the paper's Table 4 on LLaMA-3-8B's architecture with random weights (step time and
# peak memory at batch 4 x 256 tokens, bf16: LoRA, BoRA b=8 / b=16, MELoRA, HydraLoRA, DoRA, PEFT's DoRA, ratios to
# LoRA beside the paper's), then generation throughput (LoRA, BoRA training form, BoRA LoRA form, merged), then whether
# continuous batching decodes what padded batches do on the GPU (scripts/gpu_decoding_check.py), after a check that
# BoRA's two training forms agree on the device and that the operator counter sees the device's backward, and last
# Table 4 eager beside torch.compile (issue 22: `bora bench --table4 --compile` on 4 of LLaMA-3-8B's 32 layers, batch
# 4 x 256: compiled / eager step time per method, compile time, graph breaks). No hub, no weights to download.
# Measured before the compiled step (30 Table 4 rounds, 5 / 3 --eval rounds): 4.4 minutes on an H200, 5.7 on an H100
# (results/gpu-check/); with 15 and 3 rounds and the compiled step, expected about 6 minutes on an H200 (not measured
# yet). The six steps are capped at 0.5, 0.5, 2, 2, 2 and 2.83 minutes (9.83 in all: a device call may run 10); the
# compiled step prints a line per method as it finishes, so a cap still leaves those.
#
# Needs a CUDA build of torch plus transformers, peft and accelerate (a GPU machine may have only those) and this
# checkout. Beyond those, `python -m bora.bench` imports three packages: hydra-core (with omegaconf and
# antlr4-python3-runtime), pandas (with python-dateutil) and tabulate (for pandas' to_markdown). The script
# pip-installs whichever of them is missing, or stops with one line when it cannot (no network). bora itself runs
# from the checkout (PYTHONPATH=src): nothing to build, as `pip install --no-deps -e .` would need setuptools from
# the network.
#
# Usage: scripts/gpu_check.sh [OUT_DIR]   (default: $OUT, else outputs/gpu-check). Writes OUT_DIR/gpu_check.log;
# exits non-zero when a bench failed or ran past its cap. Knobs: PYTHON (default python), ROUNDS (Table 4 timed
# rounds, default 15), EVAL_ROUNDS (default 3), COMPILE_ROUNDS (default 10), COMPILE_LAYERS (default 4); for a dry
# run of this script on a CPU:
#   DEVICE=cpu EXTRA="--model tiny-decoder --layers 1 --batch 1 --length 16 --new-tokens 4" scripts/gpu_check.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT_DIR="${1:-${OUT:-$REPO/outputs/gpu-check}}"
PYTHON="${PYTHON:-python}"
ROUNDS="${ROUNDS:-15}"
EVAL_ROUNDS="${EVAL_ROUNDS:-3}"
COMPILE_ROUNDS="${COMPILE_ROUNDS:-10}"
COMPILE_LAYERS="${COMPILE_LAYERS:-4}"
DEVICE="${DEVICE:-cuda}"
read -r -a EXTRA <<<"${EXTRA:-}"
mkdir -p "$OUT_DIR"
LOG="$OUT_DIR/gpu_check.log"
: > "$LOG"
export PYTHONPATH="$REPO/src${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
cd "$REPO"

# module -> the pip requirement that provides it (versions as in pyproject.toml)
declare -A NEEDED=([hydra]="hydra-core>=1.3.2" [omegaconf]="omegaconf>=2.3" [pandas]="pandas>=2.0"
                   [tabulate]="tabulate>=0.9")
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
run 120 "$PYTHON" -m bora.bench --table4 --lora-form --device "$DEVICE" --dtype bf16 --rounds "$ROUNDS" --warmup 3 \
  ${EXTRA[@]+"${EXTRA[@]}"}
run 120 "$PYTHON" -m bora.bench --eval --model llama-3-8b --device "$DEVICE" --dtype bf16 --batch 4 --length 128 \
  --new-tokens 64 --rounds "$EVAL_ROUNDS" --warmup 1 ${EXTRA[@]+"${EXTRA[@]}"}
run 120 "$PYTHON" scripts/gpu_decoding_check.py --device "$DEVICE" --new-tokens 32
# Table 4 eager beside torch.compile (inductor, default mode), last: compiling a method's forward and backward takes
# the longest and is the least known; on COMPILE_LAYERS of the 32 layers (compile time grows with the layers traced),
# each method on a fresh dynamo state with its eager and compiled steps interleaved. Last line
# bora_compiled_time_x_eager: X
run 170 "$PYTHON" -m bora.bench --table4 --compile --lora-form --device "$DEVICE" --dtype bf16 \
  --layers "$COMPILE_LAYERS" --rounds "$COMPILE_ROUNDS" --warmup 2 ${EXTRA[@]+"${EXTRA[@]}"}
echo "log: $LOG"
exit "$failed"
