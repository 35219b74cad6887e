#!/usr/bin/env bash
# Issue 7's GPU run: `ddpm` on MNIST and Fashion-MNIST, trained side by side on one GPU for MINUTES each (a probe
# sizes the steps), then sampled and scored there by bench/diffusion.py (--device cuda). A short smoke run on the
# GPU comes first, so a fault costs a minute, not the run. Results land in bench/results/ddpm-DATA-gpu.json (+ PNGs);
# with $OUT set (a device machine's return folder) they are packed there with the logs and the EMA weights.
#
#     GENZOO_DATA=/path/to/prepared/data bash bench/gpu_diffusion.sh [MINUTES]
#
# DEVICE=cpu and SETS="width=8 timesteps=20" make a dry run of the whole script on a CPU. BUDGET=S stops the runs
# S seconds after the start (what they finished by then is packed: each evaluation writes its own JSON).
set -uo pipefail
MINUTES=${1:-3}
DEVICE=${DEVICE:-cuda}
SETS=${SETS:-width=64 batch_size=256}
EVAL=${EVAL:---n 10000 --n-ddpm 1000 --bpd-images 500 --bpd-batch 500 --speed-n 256 --eval-batch 2500}
PY=${PY:-python3}
THREADS=${THREADS:-8}
BUDGET=${BUDGET:-0}
OUT=${OUT:-}
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*"; }

if [ "$DEVICE" != cpu ]; then nvidia-smi -L; fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
sets=(); for s in $SETS; do sets+=(--set "$s"); done

log "smoke run"
$PY bench/diffusion.py --data mnist --presets ddpm --tag gpu-smoke --steps 20 --set width=8 --set timesteps=20 \
    --set coverage_every_steps=0 --n 200 --n-ddpm 20 --ddim-steps 2 --bpd-images 10 --bpd-batch 10 --speed-n 4 \
    --device "$DEVICE" --eval-batch 100 > /tmp/gpu-smoke.log 2>&1 || { tail -40 /tmp/gpu-smoke.log; exit 3; }
rm -rf bench/results/ddpm-mnist-gpu-smoke* runs/bench-ddpm-mnist-gpu-smoke*
log "smoke passed"

# (no apostrophes: the result records the command shell-quoted)
note="trained and scored beside the run on the other data set, on the same GPU: the images/s are each share"
limit=()
if [ "$BUDGET" -gt 0 ]; then limit=(timeout $((BUDGET - SECONDS))); fi
pids=()
for data in mnist fashion-mnist; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$THREADS "${limit[@]}" $PY bench/diffusion.py --data $data --presets ddpm --tag gpu \
        --train-minutes "$MINUTES" "${sets[@]}" --set coverage_every_steps=0 $EVAL --device "$DEVICE" --note "$note" \
        --driver "bash bench/gpu_diffusion.sh $MINUTES" \
        > "${OUT:-/tmp}/ddpm-$data-gpu.log" 2>&1 &
    pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
log "runs ended (status $status)"

if [ -n "$OUT" ]; then
    files=(bench/results/ddpm-*-gpu*)
    for data in mnist fashion-mnist; do
        r=runs/bench-ddpm-$data-gpu
        files+=("$r"/summary.json "$r"/config.json "$r"/metrics.jsonl "$r"/eval-bench-*.json "$r"/samples.png \
                "$r"/curves.png "$r"-probe/summary.json)
        if [ -f "$r/ema.safetensors" ]; then split -b 15M "$r/ema.safetensors" "$OUT/ema-$data.part-"; fi
    done
    tar czf "$OUT/results.tar.gz" --ignore-failed-read "${files[@]}" 2>/dev/null
    ls -la "$OUT"
fi
exit $status
