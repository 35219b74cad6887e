#!/usr/bin/env bash
# The diffusion row of the augmentation-gain experiment on a GPU: `ddpm-cfg` trained on n = 100, 1000 and
# 60,000 real MNIST images side by side on one GPU, each sampled there (DDIM, the 2 x n generated images of the
# seeds and the 60,000 of CAS) while the classifiers train on the CPU cores (bench/augment.py --device cuda --jobs 3).
# Results land in bench/results/augment-ddpm-cfg-mnist-gpu.{json,png}; with $OUT set (a device machine's return
# folder) they are packed there with the logs, each n's report and the three models' EMA weights.
#
#     GENZOO_DATA=/path/to/prepared/data bash bench/gpu_augment.sh
#
# DEVICE=cpu N=100,500 DATA=digits SETS="width=8 timesteps=20" STEPS=30 OPTS="steps=5" CAS_N=100 CLF_STEPS=20 make a
# dry run of the whole script on a CPU in a minute. BUDGET=S stops the runs S seconds after the start; the n whose
# reports are done by then still make the result (bench/augment.py reuses a finished report), and so do the rows of
# the committed result that the same commands made (--keep-rows): with SETS=max_train_minutes=3 (the committed
# run's), N=100,1000,60000 runs n = 60,000 alone and keeps the other two.
set -uo pipefail
DATA=${DATA:-mnist}
N=${N:-100,1000,60000}
SETS=${SETS:-}
STEPS=${STEPS:-4000}
OPTS=${OPTS:-sampler=ddim steps=25 guidance=0}
CAS_N=${CAS_N:-60000}
CLF_STEPS=${CLF_STEPS:-300}
BATCH=${BATCH:-2500}
THREADS=${THREADS:-5}
source "$(dirname "$0")/gpu_common.sh"
export OMP_NUM_THREADS=$THREADS

note="the n ran side by side on one GPU, so each wall time is its share"
note+="; the classifiers trained on CPU cores, $THREADS threads each"
args=(ddpm-cfg --data "$DATA" --steps "$STEPS" --set coverage_every_steps=0 --classifier-steps "$CLF_STEPS"
      --cas-n "$CAS_N" --device "$DEVICE" --batch-size "$BATCH" --variant gpu --note "$note" --keep-rows)
for s in $SETS; do args+=(--set "$s"); done
for o in $OPTS; do args+=(--opt "$o"); done
limit=()
if [ "$BUDGET" -gt 0 ]; then limit=(timeout $((BUDGET - SECONDS))); fi

log "augment, n = $N"
"${limit[@]}" $PY bench/augment.py "${args[@]}" --n "$N" --jobs 3
status=$?
log "augment ended (status $status)"
tag=ddpm-cfg-$($PY -c "from genzoo.data import short_name; print(short_name('$DATA'))")-gpu
if [ $status -ne 0 ]; then      # assemble the result from the n that finished
    done_ns=$(for n in ${N//,/ }; do [ -f "runs/bench-augment-$tag/augment-n$n.json" ] && printf '%s,' "$n"; done)
    if [ -n "$done_ns" ]; then
        log "result from n = ${done_ns%,}"
        $PY bench/augment.py "${args[@]}" --n "${done_ns%,}" --jobs 3
    fi
fi

if [ -n "$OUT" ]; then
    files=(bench/results/augment-"$tag"* runs/bench-augment-"$tag"*.log runs/bench-augment-"$tag"/*.json)
    for n in ${N//,/ }; do
        r=runs/bench-augment-$tag-n$n
        files+=("$r"/summary.json "$r"/config.json "$r"/metrics.jsonl "$r"/samples.png "$r"/curves.png)
        if [ -f "$r/ema.safetensors" ]; then cp "$r/ema.safetensors" "$OUT/ema-n$n.safetensors"; fi
    done
    tar czf "$OUT/results.tar.gz" --ignore-failed-read "${files[@]}" 2>/dev/null
    ls -la "$OUT"
fi
exit $status
