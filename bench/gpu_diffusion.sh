#!/usr/bin/env bash
# The diffusion family's GPU runs: PRESET (`ddpm`, or the guided `ddpm-cfg`) on MNIST and Fashion-MNIST, trained side by side on
# one GPU for MINUTES each (a probe sizes the steps), then sampled and scored there by bench/diffusion.py (--device
# cuda). `ddpm`: the DDIM sweep and DDPM-1000; `ddpm-cfg`: FID, per-class FID and CAS on 60,000 samples with the
# full classifier recipe at guidance 0 and 2 (on this CPU its rows have 500 samples and a 1000-sample CAS). A short
# smoke run on the GPU comes first, so a fault costs a minute, not the run. Results land in
# bench/results/PRESET-DATA-gpu.json (+ PNGs); with $OUT set (a device machine's return folder) they are packed
# there with the logs and the EMA weights.
#
#     python bench/pack_data.py mnist fashion-mnist --out .gpu/data     # here: 41 MiB to carry
#     GENZOO_DATA=$PWD/.gpu/data bash bench/gpu_diffusion.sh [MINUTES]
#     GENZOO_DATA=$PWD/.gpu/data PRESET=ddpm-cfg BUDGET=540 bash bench/gpu_diffusion.sh 3
#
# DEVICE=cpu and SETS="width=8 timesteps=20" make a dry run of the whole script on a CPU (with EVAL set small); its
# results are tagged "dry" (delete them after), so the committed GPU rows stay as they are.
# BUDGET=S stops the runs S seconds after the start (what they finished by then is packed: each evaluation writes
# its own JSON).
set -uo pipefail
MINUTES=${1:-3}
PRESET=${PRESET:-ddpm}
SETS=${SETS:-width=64 batch_size=256}
case "$PRESET" in
    ddpm) EVAL=${EVAL:---n 10000 --n-ddpm 1000 --bpd-images 500 --bpd-batch 500 --speed-n 256 --eval-batch 2500} ;;
    ddpm-cfg) EVAL=${EVAL:---n 10000 --guidance 0,2 --cond-steps 25 --cas-n 60000 --bpd-images 500 --bpd-batch 500 \
--speed-n 256 --eval-batch 2500} ;;
    *) echo "PRESET is ddpm or ddpm-cfg, got $PRESET"; exit 2 ;;
esac
THREADS=${THREADS:-8}
source "$(dirname "$0")/gpu_common.sh"
TAG=${TAG:-$([ "$DEVICE" = cpu ] && echo dry || echo gpu)}    # a CPU dry run never writes over the GPU rows

sets=(); for s in $SETS; do sets+=(--set "$s"); done

log "smoke run"
$PY bench/diffusion.py --data mnist --presets "$PRESET" --tag gpu-smoke --steps 20 --set width=8 --set timesteps=20 \
    --set coverage_every_steps=0 --n 200 --n-ddpm 20 --ddim-steps 2 --cond-steps 2 --cas-n 100 --cas-recipe-steps 5 \
    --bpd-images 10 --bpd-batch 10 --speed-n 4 --device "$DEVICE" --eval-batch 100 > /tmp/gpu-smoke.log 2>&1 \
    || { tail -40 /tmp/gpu-smoke.log; exit 3; }
rm -rf bench/results/"$PRESET"-mnist-gpu-smoke* runs/bench-"$PRESET"-mnist-gpu-smoke*
log "smoke passed"

# (no apostrophes: the result records the command shell-quoted)
note="trained and scored beside the run on the other data set, on the same GPU: the images/s are each share"
limit=()
if [ "$BUDGET" -gt 0 ]; then limit=(timeout $((BUDGET - SECONDS))); fi
pids=()
for data in mnist fashion-mnist; do
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=$THREADS "${limit[@]}" $PY bench/diffusion.py --data $data --presets "$PRESET" --tag "$TAG" \
        --train-minutes "$MINUTES" "${sets[@]}" --set coverage_every_steps=0 $EVAL --device "$DEVICE" --note "$note" \
        --driver "PRESET=$PRESET bash bench/gpu_diffusion.sh $MINUTES" \
        > "${OUT:-/tmp}/$PRESET-$data-$TAG.log" 2>&1 &
    pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
log "runs ended (status $status)"

if [ -n "$OUT" ]; then
    files=(bench/results/"$PRESET"-*-"$TAG"*)
    for data in mnist fashion-mnist; do
        r=runs/bench-$PRESET-$data-$TAG
        files+=("$r"/summary.json "$r"/config.json "$r"/metrics.jsonl "$r"/eval-bench-*.json "$r"/samples.png \
                "$r"/curves.png "$r"-probe/summary.json)
        if [ -f "$r/ema.safetensors" ]; then split -b 15M "$r/ema.safetensors" "$OUT/ema-$PRESET-$data.part-"; fi
    done
    tar czf "$OUT/results.tar.gz" --ignore-failed-read "${files[@]}" 2>/dev/null
    ls -la "$OUT"
fi
exit $status
