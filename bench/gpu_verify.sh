#!/usr/bin/env bash
# Everything GPU-side of finetuning and generation in one call (issue 18), one summary line per figure:
#   1. the memory account at full falcon-7b shapes, 8-bit (bench/finetune_memory.py): estimate vs measured;
#   2. the default `workbench finetune` on falcon-7b shapes under a simulated 24 GB card (bench/finetune_24gb.py);
#   3. the speed ratio, ours vs the standard recipe, 8-bit (bench/finetune_gpu.py);
#   4. the generation ratio, the backend vs HF generate at batch 64 (bench/generate_gpu.py).
# On the GPU machine (no internet): pip install the carried bitsandbytes and pydantic wheels, then
#   bash bench/gpu_verify.sh            # about 5 minutes on an H100/H200
#   bash bench/gpu_verify.sh --tiny     # the CPU: every step on tiny shapes, to check the script (~2 minutes)
# Full logs in ${LOGS:-/tmp/gpu-verify}; each step's last lines are the summary.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
LOGS=${LOGS:-/tmp/gpu-verify}
mkdir -p "$LOGS"
failed=0

step() {  # name, then the command; prints the summary lines it names
  local name=$1; shift
  if ! "$@" > "$LOGS/$name.log" 2>&1; then
    echo "$name: FAILED ($*), log $LOGS/$name.log:"; tail -5 "$LOGS/$name.log"; failed=1; return
  fi
}

if [ "${1:-}" = "--tiny" ]; then
  # fp32, the CPU's training layout: a CPU without bf16 instructions emulates bf16 matmuls (minutes per step)
  step memory "$PY" bench/finetune_memory.py --device cpu --layers 1 --length 256 --dtype float32
  step finetune24 "$PY" bench/finetune_24gb.py --tiny
  # bf16 is left out here: emulated on most CPUs, it was half this step's time and checks no more of the script
  step speed "$PY" bench/finetune_gpu.py --tiny --steps 3 --warmup 1 --quant none --examples 200 --pack-length 512 \
    --recipes standard,ours
  step generation "$PY" bench/generate_gpu.py --tiny --prompts 64 --new-tokens 16
else
  step memory "$PY" bench/finetune_memory.py --device cuda --layers 32 --quant 8bit --rows 4 --length 1024
  step finetune24 "$PY" bench/finetune_24gb.py --steps 4
  step speed "$PY" bench/finetune_gpu.py --steps 8 --warmup 2 --recipes standard,ours
  step generation "$PY" bench/generate_gpu.py --prompts 128 --new-tokens 32
fi

[ -f "$LOGS/memory.log" ] && grep -h "^estimate .* ratio" "$LOGS/memory.log" | sed 's/^/memory account: /'
[ -f "$LOGS/finetune24.log" ] && grep -h "^finetune default on" "$LOGS/finetune24.log"
[ -f "$LOGS/speed.log" ] && grep -h "^ours " "$LOGS/speed.log" | awk '{print "speed ratio: " $NF " the standard recipe (ours: " $5 " useful tok/s, peak " $7 " GiB)"}'
[ -f "$LOGS/generation.log" ] && grep -h "^generation ratio" "$LOGS/generation.log"
exit $failed
