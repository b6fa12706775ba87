#!/usr/bin/env bash
# Builds the project's Python environment in $VENV (default .venv) from nothing, idempotently.
#
# The virtual environment sees the system's site-packages, so a PyTorch already installed there
# (a CUDA build on a GPU machine) is kept. Only where no torch is importable do we install the
# pinned pair below: on a CPU machine whose pip index offers a local CPU wheel that avoids
# downloading several GB of CUDA packages; torch and torchvision must always be pinned together.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
TORCH_PAIR=(torch==2.13.0 torchvision==0.28.0)

[ -x "$VENV/bin/python" ] || python3 -m venv --system-site-packages "$VENV"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)

if "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -c "import torch; print('keeping installed torch', torch.__version__)"
    if ! "$PY" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torchvision') is None)"; then
        echo "torch is installed but torchvision is not: install the torchvision release that" \
             "matches torch $("$PY" -c 'import torch; print(torch.__version__)') first." >&2
        exit 1
    fi
else
    "${PIP[@]}" "${TORCH_PAIR[@]}"
fi
"${PIP[@]}" -e ".[test]"
"$PY" -c "import ats_video, timm, pytorchvideo.data; print('environment ready:', '$VENV')"
