#!/usr/bin/env bash
# The main job: set up, prepare MNIST, and train the default model (the conv VAE) within a budget of 11 minutes
# of training on any machine: fit_steps times the step for 10 seconds and plans as many of the preset's 15,000
# steps as the budget holds, with a cosine learning-rate decay from 2e-3 that ends with the run. Then print where the run
# folder, samples, curves, metrics and checkpoint are. README states what it reached on each CPU measured.
# Extra arguments go to `genzoo train`, e.g. `bash scripts/quickstart.sh --set max_train_minutes=30`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
"$VENV/bin/genzoo" data prepare mnist
"$VENV/bin/genzoo" train vae --data mnist --set max_train_minutes=11 --set fit_steps=true \
  --set lr=2e-3 --set lr_decay=cosine "$@"
