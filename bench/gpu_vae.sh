#!/usr/bin/env bash
# The VAE rows at IWAE k = 5000 on a GPU: the six MNIST VAE rows that this CPU scored at IWAE k = 1000 (k = 5000 costs 50M
# decoder passes per row, about 4 h of both cores here for the conv VAE and longer for the PixelVAE; the MLP rows
# have k = 5000 from this CPU), trained
# again by its recorded recipe (same preset, steps and --set options) and scored on the full test set at k = 5000,
# all side by side on one GPU. A short smoke run comes first, so a fault costs a minute, not the run. Results land
# in bench/results/PRESET-mnist-VARIANT.json with VARIANT = the CPU row's variant + "-gpu" (the CPU rows stay: their
# train times are the 60-minute CPU recipes). With $OUT set (a device machine's return folder) the results,
# figures and logs are packed there.
#
#     python bench/pack_data.py mnist --out .gpu/data        # here: 11 MiB to carry
#     GENZOO_DATA=$PWD/.gpu/data bash bench/gpu_vae.sh         # there
#
# ROWS picks rows by name (default: all six below). DEVICE=cpu DATA=digits K=20 N=200 STEPS=30 make a dry run of
# the whole script on a CPU in a minute (STEPS replaces every row's steps; delete the digits files it writes).
# BUDGET=S stops the runs S seconds after the start; each row that finished by then has its result.
set -uo pipefail
DATA=${DATA:-mnist}
K=${K:-5000}
N=${N:-10000}
STEPS=${STEPS:-}
METRICS=${METRICS:-fid,kid,pr,score,nll}     # CAS (a 4000-step classifier fit on the CPU) stays with the CPU rows
THREADS=${THREADS:-2}
source "$(dirname "$0")/gpu_common.sh"
export OMP_NUM_THREADS=$THREADS

# name: preset, steps and options of the CPU row (bench/results/PRESET-mnist-VARIANT.json), longest first
declare -A ROW=(
    [vae]="vae 42000"
    [vae-pixel]="vae 18000 pixel_context=7 lr_decay=cosine max_train_minutes=58"
    [iwae-pixel]="iwae 6000 pixel_context=7 lr_decay=cosine max_train_minutes=58"
    [iwae-short]="iwae 5000"
    [beta-vae-short]="beta-vae 5000"
    [cvae-short]="cvae 5000"
)
ROWS=${ROWS:-vae vae-pixel iwae-pixel iwae-short beta-vae-short cvae-short}

log "smoke run"
$PY bench/family.py vae --data digits --steps 20 --set width=8 --iwae-k 10 --n 100 --metrics nll \
    --variant gpu-smoke --device "$DEVICE" > /tmp/gpu-vae-smoke.log 2>&1 || { tail -40 /tmp/gpu-vae-smoke.log; exit 3; }
rm -rf bench/results/vae-digits-gpu-smoke* runs/bench-vae-digits-gpu-smoke docs/figures/vae-digits-gpu-smoke-*
log "smoke passed"

limit=()
if [ "$BUDGET" -gt 0 ]; then limit=(timeout $((BUDGET - SECONDS))); fi
mkdir -p runs
pids=() tags=()
short=$($PY -c "from genzoo.data import short_name; print(short_name('$DATA'))")
for name in $ROWS; do
    read -r preset steps sets <<< "${ROW[$name]}"
    variant=${name#"$preset"}; variant=${variant#-}; variant=${variant:+$variant-}gpu
    args=("$preset" --data "$DATA" --steps "${STEPS:-$steps}" --iwae-k "$K" --n "$N" --metrics "$METRICS"
          --variant "$variant" --device "$DEVICE" --eval-batch 2500)
    for s in $sets; do args+=(--set "$s"); done
    tag=$preset-$short-$variant
    tags+=("$tag")
    log "start $name: bench/family.py ${args[*]}"
    "${limit[@]}" $PY bench/family.py "${args[@]}" > "runs/gpu-vae-$name.log" 2>&1 &
    pids+=($!)
done
status=0
for p in "${pids[@]}"; do wait "$p" || status=$?; done
log "runs ended (status $status)"
for name in $ROWS; do echo "== $name"; tail -3 "runs/gpu-vae-$name.log"; done

if [ -n "$OUT" ]; then
    files=(runs/gpu-vae-*.log)
    for tag in "${tags[@]}"; do files+=(bench/results/"$tag".json bench/results/"$tag".png docs/figures/"$tag"-*.png); done
    tar czf "$OUT/results.tar.gz" --ignore-failed-read "${files[@]}" 2>/dev/null
    ls -la "$OUT"
fi
exit $status
