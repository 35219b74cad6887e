# Sourced by quickstart.sh and test.sh: a virtual environment in .venv with torch installed
# first and pinned, then genzoo and its dependencies. Safe to run again; it skips what is done.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GENZOO_VENV:-$ROOT/.venv}"
TORCH_VERSION="${GENZOO_TORCH_VERSION:-2.13.0}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
# torch first, then everything else under a constraint so that nothing can pull another torch
if ! "$VPY" -c "import torch, sys; sys.exit(0 if torch.__version__.split('+')[0] == '$TORCH_VERSION' else 1)" 2>/dev/null; then
  echo "[setup] installing torch==$TORCH_VERSION"
  "$VPY" -m pip install --disable-pip-version-check -q "torch==$TORCH_VERSION"
fi
CONSTRAINT="$(mktemp)"
trap 'rm -f "$CONSTRAINT"' EXIT
echo "torch==$TORCH_VERSION" > "$CONSTRAINT"
if ! "$VPY" -c "import genzoo, pytest, playwright, gradio" 2>/dev/null || [ "$ROOT/pyproject.toml" -nt "$VENV/.genzoo-installed" ]; then
  echo "[setup] installing genzoo and its dependencies"
  "$VPY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINT" -e "$ROOT[test,demo]"
  touch "$VENV/.genzoo-installed"
fi
"$VPY" -c "import torch; print('[setup] torch', torch.__version__, '| threads', torch.get_num_threads())"
