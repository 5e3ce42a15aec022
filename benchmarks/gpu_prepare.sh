#!/usr/bin/env bash
# Prepares what benchmarks/gpu_check.sh needs on a machine that reaches no package index:
#   .whl/           the Python packages the GPU machine lacks, as wheels for its Python 3.12
#   .device_data/   the MNIST files and the packed-network probe (from ../shared, which does
#                   not travel)
# Both folders are git-ignored. Run it here, in the repository root, before the device call:
#   bash benchmarks/gpu_prepare.sh
set -euo pipefail
cd "$(dirname "$0")/.."

# The GPU machine has torch, pytorch-lightning, torchmetrics, tensorboard, rich, scipy,
# matplotlib, joblib, pytest and pytest-xdist; these are what mnist_sweep needs besides.
WHEELS=(
  hydra-core==1.3.2 omegaconf==2.3.0 antlr4-python3-runtime==4.9.3
  hydra-joblib-launcher==1.2.0 hydra-submitit-launcher==1.2.0 submitit
  optuna alembic sqlalchemy colorlog mako greenlet
)
rm -rf .whl && mkdir -p .whl
for wheel in "${WHEELS[@]}"; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 --platform any -d .whl "$wheel" \
  || python3 -m pip download -q --no-deps --python-version 3.12 -d .whl "$wheel"
done
# antlr4-python3-runtime 4.9.3 comes as a source archive only: build its (pure) wheel here
for sdist in .whl/*.tar.gz; do
  [ -e "$sdist" ] || continue
  python3 -m pip wheel -q --no-deps -w .whl "$sdist" && rm "$sdist"
done

rm -rf .device_data && mkdir -p .device_data/MNIST/raw
cp ../shared/datasets/MNIST/raw/*.gz .device_data/MNIST/raw/
cp ../shared/probes/packed_probe.py .device_data/
du -sh .whl .device_data
