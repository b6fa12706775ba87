#!/usr/bin/env bash
# Builds the project's Python environment in $VENV (default .venv) from nothing, idempotently.
#
# A PyTorch already installed is kept (a CUDA build on a GPU machine): inside an active virtual
# environment that has torch, $VENV links to that environment; otherwise $VENV is a new virtual
# environment that sees the system's (or conda's) site-packages. Only where no torch is
# importable do we install the pinned pair below: on a CPU machine whose pip index offers a
# local CPU wheel, that avoids downloading several GB of CUDA packages. torch and torchvision
# must always be pinned together.
#
# $EXTRAS names the optional parts (setup.py's extras; default test,decord: decord installs only
# where it has wheels); torchcodec is left to the user, as it must match the torch build and
# needs FFmpeg's shared libraries (README.md, "Video decoders"). $CONSTRAINTS, a pip constraints
# file, pins versions (CI's second lane: the declared minimums). No step needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-test,decord}
TORCH_PAIR=(torch==2.13.0 torchvision==0.28.0)

if [ ! -e "$VENV" ]; then
    if python3 -c "import sys, torch; sys.exit(sys.prefix == sys.base_prefix)" 2>/dev/null; then
        # an active virtual environment already has torch, which a new venv could not see: use it
        ln -s "$(python3 -c 'import sys; print(sys.prefix)')" "$VENV"
    else
        python3 -m venv --system-site-packages "$VENV"
    fi
fi
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
"${PIP[@]}" ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e ".[$EXTRAS]"
"$PY" -c "import ats_video, timm, pytorchvideo.data; print('environment ready:', '$VENV')"
