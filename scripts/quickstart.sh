#!/usr/bin/env bash
# The main job: set up, prepare MNIST, train the default model (the conv VAE, ~12 minutes on a
# 2-core CPU; 12.6 min measured from a fresh clone), and print where the run folder, samples,
# curves, metrics and checkpoint are.
# Extra arguments go to `genzoo train`, e.g. `bash scripts/quickstart.sh --steps 2000`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
"$VENV/bin/genzoo" data prepare mnist
"$VENV/bin/genzoo" train vae --data mnist "$@"
