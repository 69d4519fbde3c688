#!/usr/bin/env bash
# One command for a lent GPU (issue 17): the CUDA tests, the HVP engines beside curvlinops,
# ResNet-18 products over 1,000 and 5,000 images, the full-size single-pass linear algebra,
# a krylov solve, and the projection of one paper-size ResNet-18 Hessian against the
# paper's per-stage minutes. About 8 minutes on one H200; writes into OUTDIR (flat, 4
# files): gpu_check.json, gpu_check.md, gpu_check.log, pytest_cuda.xml.
#
#   bash benchmarks/probes/gpu_check.sh OUTDIR [--device cuda|cpu] [--quick] [--stages a,b]
#                                       [--budget SECONDS]
#
# Stages, in order (each with its own time limit, cut to what the total budget has left):
#   env 20 s, pytest 60, scale 90, linalg 110, engines 100, krylov 70     (total 480 s;
#   --quick doubles each limit and the total: it rehearses code paths on a slow shared CPU)
# Every stage writes its JSON into the work folder (GPU_CHECK_WORK, default
# /tmp/gpu_check_work) as it goes; after each stage gpu_report.py merges everything there
# into OUTDIR, so a stage that fails or runs out of time loses nothing measured before it.
# --stages reruns some stages only and keeps the other stages' files (on a machine that is
# still warm); without it the work folder starts empty.
#
# On the device machine (nvidia-h200: Python 3.12, its own torch 2.11 + torchvision, no
# network): the project is not pip-installed (its torch pin does not apply there); it runs
# with PYTHONPATH=src (the scripts run as `python -m benchmarks.probes.NAME` from the
# repository root), and the packages the image lacks come from the wheels in .whl/
# (made here by `bash benchmarks/probes/gpu_wheels.sh`, ~12 MiB), installed with --target.
# The call for a session that is lent a GPU (device tool `run`):
#   command:   bash benchmarks/probes/gpu_check.sh "$OUT" --device cuda
#   carry:     [".whl"]
#   timeout_s: 560
# Then, here: python -m benchmarks.probes.gpu_report results <files_at>/gpu_check.json
#   (writes benchmarks/results/gpu_h200.md and .json). A rerun of failed stages on the still
# warm machine: bash benchmarks/probes/gpu_check.sh "$OUT" --device cuda --stages linalg,krylov
#
# CPU rehearsal (minutes; tiny sizes, every code path):
#   bash benchmarks/probes/gpu_check.sh /tmp/gpu_rehearsal --device cpu --quick
set -uo pipefail

usage() { echo "usage: $0 OUTDIR [--device cuda|cpu] [--quick] [--stages a,b] [--budget S]" >&2; exit 2; }
[ $# -ge 1 ] || usage
OUTDIR=$1
shift
DEVICE=cuda QUICK=0 STAGES="" BUDGET=""
ARGV="$*"
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=${2:?}; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --stages) STAGES=${2:?}; shift 2 ;;
    --budget) BUDGET=${2:?}; shift 2 ;;
    *) usage ;;
  esac
done
case $DEVICE in cuda | cpu) ;; *) echo "--device must be cuda or cpu, got $DEVICE" >&2; exit 2 ;; esac
# --quick rehearses code paths on a (shared, slow) CPU: twice each stage's limit.
SLOW=1
[ $QUICK = 1 ] && SLOW=2
BUDGET=${BUDGET:-$((480 * SLOW))}

cd "$(dirname "$0")/../.." || exit 2
START=$(date +%s)
export PYTHONUNBUFFERED=1
WORK=${GPU_CHECK_WORK:-/tmp/gpu_check_work}
SITE=${GPU_CHECK_SITE:-/tmp/gpu_check_site}
mkdir -p "$OUTDIR" "$WORK"
[ -n "$STAGES" ] || rm -rf "${WORK:?}"/*
OUTDIR=$(cd "$OUTDIR" && pwd)
exec > >(tee -a "$OUTDIR/gpu_check.log") 2>&1
TEE_PID=$!

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
echo "gpu_check: $(date -u +%FT%TZ) device=$DEVICE quick=$QUICK stages=${STAGES:-all} budget=${BUDGET}s python=$PY"

# Packages the device image lacks, from the carried wheels (Python 3.12 builds only).
PYVER=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
if compgen -G ".whl/*.whl" >/dev/null; then
  if [ "$PYVER" = 3.12 ]; then
    if [ ! -e "$SITE/.installed" ]; then
      "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl && touch "$SITE/.installed" ||
        echo "gpu_check: WARNING: installing .whl/*.whl into $SITE failed"
    fi
  else
    echo "gpu_check: .whl/ holds Python 3.12 wheels, this is $PYVER: not installed"
    SITE=""
  fi
else
  SITE=""
fi
export PYTHONPATH="src${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
printf '{"device": "%s", "quick": %s, "stages": "%s", "budget": %s, "argv": "%s"}\n' \
  "$DEVICE" "$([ $QUICK = 1 ] && echo true || echo false)" "${STAGES:-all}" "$BUDGET" \
  "OUTDIR $ARGV" >"$WORK/args.json"

Q=()
[ $QUICK = 1 ] && Q=(--quick)
selected() { [ -z "$STAGES" ] || [[ ",$STAGES," == *",$1,"* ]]; }

stage() { # stage NAME BUDGET COMMAND...
  local name=$1 budget=$(($2 * SLOW))
  shift 2
  selected "$name" || return 0
  local left=$((BUDGET - ($(date +%s) - START) - 10))
  if [ "$left" -lt 15 ]; then
    echo "=== stage $name: skipped, the total budget of ${BUDGET}s is spent"
    printf '{"stage": "%s", "status": "skipped: no time left", "seconds": 0, "budget": 0}\n' \
      "$name" >>"$WORK/stages.jsonl"
    return 0
  fi
  [ "$budget" -gt "$left" ] && budget=$left
  echo "=== stage $name (limit ${budget}s): $*"
  local t0 rc status
  t0=$(date +%s.%N)
  timeout --kill-after=10 "$budget" "$@"
  rc=$?
  case $rc in
    0) status=ok ;;
    124 | 137) status="timeout after ${budget}s (rc $rc)" ;;
    *) status="failed (rc $rc)" ;;
  esac
  local dt
  dt=$("$PY" -c "import time; print(round(time.time() - $t0, 1))")
  echo "=== stage $name: $status in ${dt}s"
  printf '{"stage": "%s", "status": "%s", "seconds": %s, "budget": %s}\n' \
    "$name" "$status" "$dt" "$budget" >>"$WORK/stages.jsonl"
  "$PY" -m benchmarks.probes.gpu_report merge "$WORK" "$OUTDIR" || echo "gpu_check: merge failed"
}

if [ $QUICK = 1 ]; then
  SCALE=(--model tiny-cnn --hvp-samples 2,4 --image-size 16 --micro-batch 2 --block-size 2
    --store-run --outer 2 --inner 4 --samples 2)
else
  SCALE=(--hvp-samples 1000,5000 --micro-batch 100 --block-size 8
    --store-run --outer 16 --inner 32 --samples 64)
fi

stage env 20 "$PY" -m benchmarks.probes.gpu_report env "$WORK/env.json"
stage pytest 60 "$PY" -m pytest -q -rs -p no:cacheprovider tests -k cuda \
  --junitxml="$WORK/pytest_cuda.xml"
[ -e "$WORK/pytest_cuda.xml" ] && cp "$WORK/pytest_cuda.xml" "$OUTDIR/"
stage scale 90 "$PY" -m benchmarks.probes.gpu_scale --device "$DEVICE" "${Q[@]}" "${SCALE[@]}" \
  --json "$WORK/scale.json"
stage linalg 110 "$PY" -m benchmarks.probes.gpu_linalg --device "$DEVICE" "${Q[@]}" \
  --json "$WORK/linalg.json"
stage engines 100 "$PY" -m benchmarks.probes.hvp_engines --device "$DEVICE" "${Q[@]}" \
  --out "$WORK/engines"
stage krylov 70 "$PY" -m benchmarks.probes.gpu_krylov --device "$DEVICE" "${Q[@]}" \
  --json "$WORK/krylov.json"

"$PY" -m benchmarks.probes.gpu_report merge "$WORK" "$OUTDIR" || echo "gpu_check: merge failed"
echo "gpu_check: done in $(($(date +%s) - START))s; files in $OUTDIR: $(ls "$OUTDIR" | tr '\n' ' ')"
# The end of the report, for the run tool's output tail.
sed -n '/^## Stages/,/^## CUDA/p;/^## Projection/,$p' "$OUTDIR/gpu_check.md"
# Let tee write the last lines into the log before the command returns.
exec 1>&- 2>&-
wait "$TEE_PID" 2>/dev/null || true
