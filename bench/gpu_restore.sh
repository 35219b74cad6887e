#!/usr/bin/env bash
# The restoration benchmark over the full test set on a GPU: one run of each family the CPU table has (the
# same presets, at recipes a GPU trains in minutes) is trained side by side, then each restores all 10,000 test
# images of DATA with every task and mask preset it can, in its own process (bench/restore.py --jobs). On this CPU
# the table covers the first 100 images: RePaint and the flow's latent fits take about 1.2 s an image here, some
# 30 hours for the test set. Results: bench/results/restore-DATA-gpu.json and docs/figures/restore-DATA-gpu.png;
# with $OUT set (a device machine's return folder) they are packed there with the logs.
#
#     python bench/pack_data.py mnist fashion-mnist --out .gpu/data      # here: 41 MiB to carry
#     GENZOO_DATA=$PWD/.gpu/data BUDGET=540 bash bench/gpu_restore.sh mnist   # there; then fashion-mnist
#
# DEVICE=cpu N=40 TINY=1 bash bench/gpu_restore.sh digits makes a dry run of the whole script on a CPU in a few
# minutes (tiny networks, 20 steps; delete the digits files it writes). BUDGET=S stops training and restoring so
# that the result is written by S seconds after the start, from the runs that finished.
set -uo pipefail
DATA=${1:-mnist}
N=${N:-10000}
BATCH=${BATCH:-1000}
TINY=${TINY:-0}
THREADS=${THREADS:-2}
source "$(dirname "$0")/gpu_common.sh"
export OMP_NUM_THREADS=$THREADS

# run name: preset and training options; the CPU table's presets (its vae-mlp is the default 15000 steps here,
# not the 150000-step run, and its ddpm the width-64 GPU recipe of bench/gpu_diffusion.sh)
ddpm="ddpm --steps 3000 --set width=64 --set batch_size=256 --set max_train_minutes=4"
case "$DATA" in
    mnist|digits) RUNS=("vae-mlp" "cvae --steps 5000" "glow" "dcgan" "pixelcnn" "$ddpm") ;;
    fashion-mnist) RUNS=("vae --steps 4000" "realnvp --steps 3000" "wgan-gp" "pixelcnn --steps 3000" "$ddpm") ;;
    *) echo "DATA is mnist, fashion-mnist (or digits for a dry run), got $DATA"; exit 2 ;;
esac

stop_at=$((BUDGET > 0 ? BUDGET - 45 : 0))           # the last 45 s merge the parts, draw and pack
left() { echo $((stop_at - SECONDS)); }

mkdir -p runs
dirs=() pids=()
for spec in "${RUNS[@]}"; do
    read -r preset rest <<< "$spec"
    dir=runs/gpu-restore-$DATA-$preset
    args=(train "$preset" --data "$DATA" --out "$dir" --overwrite --no-progress --set coverage_every_steps=0)
    # shellcheck disable=SC2206
    args+=($rest)
    if [ "$TINY" = 1 ]; then     # a dry run: tiny networks, 20 steps, the same presets and options
        args+=(--steps 20 $($PY -c "
import dataclasses; from genzoo.models import default_config
fields = {f.name for f in dataclasses.fields(default_config('$preset'))}
tiny = {'width': 8, 'latent_dim': 4, 'res_blocks': 1, 'mlp_hidden': 16, 'timesteps': 20}
print(' '.join(f'--set {k}={v}' for k, v in tiny.items() if k in fields))"))
    fi
    limit=()
    if [ "$BUDGET" -gt 0 ]; then limit=(timeout "$(left)"); fi
    log "train: genzoo ${args[*]}"
    "${limit[@]}" $PY -m genzoo "${args[@]}" > "$dir.log" 2>&1 &
    pids+=($!) dirs+=("$dir")
done
trained=()
for i in "${!pids[@]}"; do
    if wait "${pids[$i]}"; then trained+=("${dirs[$i]}"); else log "${dirs[$i]} did not finish: $(tail -n 2 "${dirs[$i]}.log")"; fi
done
log "trained: ${trained[*]}"
[ ${#trained[@]} -gt 0 ] || exit 3

opts=(--opt restarts=1)
if [ "$TINY" = 1 ]; then opts+=(--opt steps=4 --opt iters=10); fi
timeout=()
if [ "$BUDGET" -gt 0 ]; then timeout=(--part-timeout "$(left)"); fi
log "restore"
$PY bench/restore.py "${trained[@]}" --data "$DATA" --n "$N" --device "$DEVICE" --batch-size "$BATCH" \
    "${opts[@]}" --jobs "${#trained[@]}" "${timeout[@]}" --variant gpu --no-progress
status=$?
log "restore ended (status $status)"

if [ -n "$OUT" ]; then
    tar czf "$OUT/results-$DATA.tar.gz" --ignore-failed-read bench/results/restore-"$DATA"-gpu.json \
        docs/figures/restore-"$DATA"-gpu.png runs/gpu-restore-"$DATA"-*.log runs/restore-parts-"$DATA"-gpu/*.log \
        runs/gpu-restore-"$DATA"-*/summary.json 2>/dev/null
    ls -la "$OUT"
fi
exit $status
