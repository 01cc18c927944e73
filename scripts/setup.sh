#!/usr/bin/env bash
# Set up prunebench on a fresh machine, idempotently:
#   1. the system libraries of the optional FFCV loader (OpenCV, libjpeg-turbo, pkg-config), with apt-get when
#      missing and running as root; without them the torchvision loader is used;
#   2. a virtual environment in .venv (override with PRUNEBENCH_VENV);
#   3. prunebench in editable mode with its test tools, MkDocs (a few MB, so that the tests build docs/), the
#      Hugging Face extra (transformers: about a minute and 150 MB, so that the tests cover `hf:` models), submitit
#      (the Slurm executor and its local test cluster), and FFCV when its libraries are present.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${PRUNEBENCH_VENV:-.venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

have_ffcv_libs() { pkg-config --exists opencv4 libturbojpeg 2>/dev/null; }

if ! have_ffcv_libs && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing FFCV's system libraries with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        libturbojpeg0-dev libopencv-dev pkg-config >/dev/null
fi

[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip setuptools wheel

if have_ffcv_libs; then
    echo "setup: installing prunebench with the FFCV loader"
    if ! "$venv/bin/python" -m pip install -q -e ".[test,docs,hf,slurm,ffcv,log]"; then
        echo "setup: FFCV did not build; installing without it (the torchvision loader will be used)"
        "$venv/bin/python" -m pip install -q -e ".[test,docs,hf,slurm,log]"
    fi
else
    echo "setup: FFCV's system libraries are missing; installing without FFCV (the torchvision loader will be used)"
    "$venv/bin/python" -m pip install -q -e ".[test,docs,hf,slurm,log]"
fi
echo "setup: done; the commands are in $venv/bin (bench, pytest)"
