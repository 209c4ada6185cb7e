#!/usr/bin/env bash
# Here, before bench/gpu_check.sh travels to a GPU machine: put what it needs into git-ignored folders
# that the device tool's `carry` takes along (64 MiB at most in all; 50.5 MiB on 2026-12-03: 11.1 + 32.3 + 7.1):
#   .gpu_data/MNIST/raw   the four MNIST files (11 MiB, gzip'd as torchvision keeps them)
#   .gpu_data/cifar10.pt  a class-stratified CIFAR-10 slice as uint8 tensors (nas.data.pack: 10,000
#                         training and 1,000 test images, 32 MiB; the 60,000 PNGs are 238 MiB on disk)
#   .whl/                 wheels of what nas needs beyond torch, for Python 3.12 on x86-64 Linux
# Usage: bash bench/gpu_prepare.sh [DATA_DIR]   (default ../shared/data)
set -euo pipefail
data=${1:-../shared/data}
mkdir -p .gpu_data/MNIST/raw .whl
cp "$data"/MNIST/raw/*.gz .gpu_data/MNIST/raw/
python3 -c "import sys; from nas import data; data.pack(data.load('cifar10', data_dir=sys.argv[1]), '.gpu_data/cifar10.pt',
            train=10000, test=1000)" "$data"
py=${PYTHON_VERSION:-3.12}
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
# optuna and its own needs; click, pyyaml, tqdm for nas itself (torch and numpy are there already)
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" --implementation cp "${plat[@]}" \
    -d .whl optuna alembic sqlalchemy mako markupsafe colorlog greenlet click pyyaml tqdm packaging typing_extensions
du -sh .gpu_data .whl
