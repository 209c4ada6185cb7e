#!/usr/bin/env bash
# Issue 12's GPU check: at most 10 minutes on one H100/H200. Prepare with bench/gpu_prepare.sh here,
# then run it there through the device tool, carrying .gpu_data and .whl:
#   bash bench/gpu_check.sh
# 1. seed 001 trained by nas on the GPU with its fixed 6-epoch schedule, 3 seeds: seconds an epoch,
#    final accuracy, time to 99.4% (bench/train_speed.py, nas side only)
# 2. candidates an hour of a short mnist_squeeze search, --jobs 1 against --jobs 4 on the one GPU
#    (bench/search_throughput.py), 2 minutes an arm on all 55,000 training images
# 3. CIFAR-10 (issue 18), on the packed slice .gpu_data/cifar10.pt (10,000 training, 1,000 test images):
#    seed 004 for 3 epochs (bench/cifar_seed004.py: seconds an epoch, scaled to 50,000 images by the
#    reader), then a 2-minute cifar_small search and its 1-seed confirmation (nas search), output kept
# Figures go to $OUT (the device tool's folder that comes back) or results/, with the GPU named.
# GPU_CHECK_QUICK=1 shrinks everything to a smoke test that also runs on a CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ] && ! python3 -c "import optuna" 2>/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 NAS_CACHE_DIR=${NAS_CACHE_DIR:-/tmp/nas-cache}
out=${OUT:-results}
data=${GPU_CHECK_DATA:-.gpu_data}
[ -d "$data/MNIST/raw" ] || data=../shared/data
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu_check_device.txt" 2>&1 || echo "no nvidia-smi" > "$out/gpu_check_device.txt"
if [ "${GPU_CHECK_QUICK:-0}" = 1 ]; then
    speed=(--nas-epochs 1 --seeds 0 --nas-options '{"bn_recalibrate": 1000}')
    search=(--minutes 0.3 --train-limit 2000 --target 0.9 --seeds 1)
    cifar_epochs=1 cifar_search=(--timeout 20 --train-limit 256)
else
    speed=(--nas-epochs 6 --seeds 0 1 2)
    search=(--minutes 2 --train-limit 55000 --target 0.99 --seeds 1)
    cifar_epochs=3 cifar_search=(--timeout 120)
fi
python3 bench/train_speed.py --data-dir "$data" --skip reference --no-progress "${speed[@]}" --out "$out" --name gpu_train_speed
python3 bench/search_throughput.py --data-dir "$data" --arms jobs1,jobs4 "${search[@]}" --out "$out" --name gpu_search_throughput
cifar=${GPU_CHECK_CIFAR:-.gpu_data/cifar10.pt}
if [ -f "$cifar" ]; then
    python3 bench/cifar_seed004.py --data-dir "$cifar" --epochs "$cifar_epochs" --no-progress --out "$out" --name gpu_cifar_seed004
    runs=$(mktemp -d)
    python3 -m nas search --space cifar_small --data-dir "$cifar" --results "$runs" --jobs 1 --confirm 1 --seeds 1 \
        "${cifar_search[@]}" 2>&1 | tee "$out/gpu_cifar_small_search.txt"
else
    echo "no $cifar: run bench/gpu_prepare.sh first; CIFAR-10 part skipped" | tee "$out/gpu_cifar_small_search.txt"
fi
