#!/usr/bin/env bash
# The GPU check in one command: the tests marked `cuda`, then the three benchmarks with `--device cuda`, and
# one markdown report of what ran, what it printed and how long each step took.
#
#   scripts/gpu_check.sh [REPORT.md]     on a machine with CUDA (default report: $OUT/gpu_check.md when $OUT
#                                        is set, else ./gpu_check.md)
#   scripts/gpu_check.sh --fetch-wheels  here, with a package index: put the wheels the GPU machine lacks
#                                        into wheels/py312 (git-ignored)
#
# The GPU machine reaches no package index. Its python3 (3.12) has torch, torchvision, both Lightning packages,
# OpenCV, TensorBoard, timm and pytest, but not google-crc32c or jsonargparse: those come from wheels/py312,
# carried with the working tree (name `wheels` in the device tool's `carry`), and so do setuptools and wheel
# for the editable install's isolated build. The project itself is installed with `pip install --no-deps -e .`.
#
# Budget: under 8 minutes on one GPU (the limits below add up to 450 s). Each step has its own time limit; a
# step that runs out is reported as such and the next one starts, so the report is always written. Environment:
# PYTHON (default python3), GPU_CHECK_QUICK=1 (the benchmarks' --quick runs: a smoke test of this script),
# GPU_CHECK_NO_INSTALL=1 (use the environment as it is).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY=${PYTHON:-python3}
WHEELS="$ROOT/wheels/py312"

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p "$WHEELS"
    exec "$PY" -m pip download --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
        -d "$WHEELS" google-crc32c "jsonargparse[signatures]" "setuptools>=68" wheel
fi

REPORT=${1:-${OUT:-.}/gpu_check.md}
LOGS=$(mktemp -d -t gpu_check.XXXXXX)
export PYTHONUNBUFFERED=1
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # this checkout, also if the install step fails
export CUBLAS_WORKSPACE_CONFIG=:4096:8  # deterministic cuBLAS, for the bit-for-bit training test
export PIP_BREAK_SYSTEM_PACKAGES=1  # the image's own Python may be marked externally managed (PEP 668)
QUICK=()
[[ "${GPU_CHECK_QUICK:-0}" == 1 ]] && QUICK=(--quick)

# name | time limit in seconds | command
STEPS=()
[[ "${GPU_CHECK_NO_INSTALL:-0}" == 1 ]] || STEPS+=(
    "install|50|$PY -m pip install --no-index --find-links $WHEELS google-crc32c \"jsonargparse[signatures]\" && $PY -m pip install --no-index --find-links $WHEELS --no-deps -e ."
)
STEPS+=(
    "pytest -m cuda|140|$PY -m pytest -q -m cuda -rs -p no:randomly tests"
    "bench_engine --device cuda|50|$PY benchmarks/bench_engine.py --device cuda --no-memory ${QUICK[*]}"
    "bench_methods --device cuda|70|$PY benchmarks/bench_methods.py --device cuda ${QUICK[*]}"
    "bench_callback --device cuda|140|$PY benchmarks/bench_callback.py --device cuda ${QUICK[*]}"
)

{
    echo "# GPU check"
    echo
    echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "- python: $($PY --version 2>&1); torch: $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1)"
    gpus=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | paste -sd ';' -)
    echo "- GPUs: ${gpus:-none found by nvidia-smi}"
    echo
    echo "| step | exit status | seconds | limit |"
    echo "|---|---:|---:|---:|"
} >"$LOGS/head.md"

: >"$LOGS/body.md"
status=0
for step in "${STEPS[@]}"; do
    IFS='|' read -r name limit command <<<"$step"
    log="$LOGS/$(echo "$name" | tr -c 'a-zA-Z0-9' '_').log"
    echo "== $name (at most ${limit}s): $command"
    start=$(date +%s)
    timeout --kill-after=10 "$limit" bash -c "$command" >"$log" 2>&1
    rc=$?
    seconds=$(($(date +%s) - start))
    [[ $rc -ne 0 ]] && status=1
    verdict=$rc
    [[ $rc -eq 124 || $rc -eq 137 ]] && verdict="$rc (ran out of time)"
    echo "| \`$name\` | $verdict | $seconds | $limit |" >>"$LOGS/head.md"
    {
        echo
        echo "## $name"
        echo
        echo "Command: \`$command\`"
        echo
        if [[ "$name" == bench_* ]]; then
            cat "$log"  # the benchmarks print markdown tables
        else
            echo '```'
            tail -n 60 "$log"
            echo '```'
        fi
    } >>"$LOGS/body.md"
    tail -n 3 "$log"
done

mkdir -p "$(dirname "$REPORT")"
cat "$LOGS/head.md" "$LOGS/body.md" >"$REPORT"
echo "report: $REPORT"
exit $status
