#!/usr/bin/env bash
# The measurements docs/results.md records, for a session lent a GPU (../shared/GPU.md).
# Run through the device tool from the project root with .data carried, e.g.
#   bash bench/gpu_session.sh smoke    # every CUDA-only line once, < 3 min (issue #28)
#   bash bench/gpu_session.sh speed    # bench + parts 1-4 (issue #6), ~6 min on an H100
#   bash bench/gpu_session.sh part5    # part 5 over seeds + its baseline (issue #4)
#   bash bench/gpu_session.sh ssl1     # bench ssl_simclr ssl_byol; rotation, jigsaw, SimCLR
#   bash bench/gpu_session.sh ssl2     # MoCo v2, BYOL, DINO, then compare ssl_methods (#12)
#   bash bench/gpu_session.sh transfer # AlexNet from ImageNet: probe and fine-tune (#13)
# The ssl modes need kornia and lightly, which the GPU box lacks: carry .wheels (GPU.md).
# transfer needs alexnet-owt-7be5be79.pth (233 MB) in $TORCH_HOME/hub/checkpoints: the
# lent box has no network and the carry limit is 64 MiB, so run it where there is one.
# Everything lands in $OUT (at most 8 files come back): logs, bench.json, tables.
set -euo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/cifar10
[ -d /tmp/cifar10/train ] || tar -xzf .data/cifar10-jpeg.tar.gz -C /tmp/cifar10
DATA=(--set data_dir=/tmp/cifar10 --set 'device="cuda"' --runs-dir /tmp/runs)
if [ -d .wheels ]; then python3 -m pip install -q --no-index --no-deps .wheels/*.whl; fi
# CUDA first: a CPU wheel, a driver mismatch or a hidden MIG slice would otherwise train
# parts 1-4 on the CPU and write CPU figures beside nvidia-smi's GPU name
python3 -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else
    'no CUDA device visible to torch ' + torch.__version__ + ': nothing measured')"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
case "${1:-speed}" in
smoke)
    python3 bench/smoke.py --out "$OUT" --data /tmp/cifar10 2>&1 | tee "$OUT/smoke.txt"
    ;;
speed)
    python -m engine bench part1 part3 --set data_dir=/tmp/cifar10 --set 'device="cuda"' \
        --profile --out "$OUT" 2>&1 \
        | tee "$OUT/bench.txt"
    rm -f "$OUT"/bench-trace-*.json "$OUT"/bench.csv  # traces are large; the tables stay
    start=$(date +%s)
    for part in part1 part2 part3 part4; do
        python -m engine run $part "${DATA[@]}" --now --quiet 2>&1 | tail -n 2
    done | tee "$OUT/parts.txt"
    echo "parts 1-4 wall: $(( $(date +%s) - start )) s" | tee -a "$OUT/parts.txt"
    python -m engine compare assignment --format markdown --runs-dir /tmp/runs | tee -a "$OUT/parts.txt"
    ;;
part5)
    start=$(date +%s)
    python -m engine sweep part5_seeds "${DATA[@]}" --now --quiet 2>&1 | tail -n 5 || true
    echo "part5 x5 seeds wall: $(( $(date +%s) - start )) s" | tee "$OUT/part5.txt"
    python -m engine compare part5_seeds --format markdown --runs-dir /tmp/runs | tee -a "$OUT/part5.txt"
    for r in /tmp/runs/part5_seeds/*/; do tail -n 3 "$r/log.txt"; done > "$OUT/part5-logs.txt"
    ;;
ssl1|ssl2)
    if [ "$1" = ssl1 ]; then
        python -m engine bench ssl_simclr ssl_byol --set data_dir=/tmp/cifar10 \
            --set 'device="cuda"' --out "$OUT" 2>&1 \
            | tee "$OUT/bench-ssl.txt"
        methods="rotation jigsaw simclr"
    else
        methods="moco byol dino"
    fi
    for m in $methods; do  # 10 epochs each: images/s, epoch time and k-NN, not final figures
        python -m engine run "ssl_$m" "${DATA[@]}" --set epochs=10 --set warmup_epochs=1 \
            --set linear_probe_epochs=50 --now --quiet 2>&1 | tail -n 2
        tail -n 4 /tmp/runs/ssl_$m/*/log.txt
    done | tee "$OUT/$1.txt"
    python -m engine compare ssl_methods --format markdown --runs-dir /tmp/runs | tee -a "$OUT/$1.txt"
    ;;
transfer)
    for e in alexnet_probe alexnet_finetune; do  # seed 002: about 24 min each on a T4
        python -m engine run $e "${DATA[@]}" --now --quiet 2>&1 | tail -n 2
        tail -n 4 /tmp/runs/$e/*/log.txt
    done | tee "$OUT/transfer.txt"
    python -m engine compare alexnet_transfer --format markdown --runs-dir /tmp/runs \
        | tee -a "$OUT/transfer.txt"
    ;;
esac
