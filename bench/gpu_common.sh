# Sourced by the bench/gpu_*.sh scripts once their own settings are read: the settings they share (DEVICE, PY,
# BUDGET, OUT), the repository root as the working folder, a timestamped log and the device check.
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
BUDGET=${BUDGET:-0}
OUT=${OUT:-}
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
log() { echo "[$(date +%T)] $*"; }
if [ "$DEVICE" != cpu ]; then nvidia-smi -L; fi
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
