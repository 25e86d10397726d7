#!/usr/bin/env bash
# Regenerates the pictures in docs/img from the shipped model:
#   docs/img/samples_int8.png   int8 artifact on the runtime   (DDIM 20 steps, seeds S..S+31)
#   docs/img/samples_float.png  float ONNX through tract       (same schedule, same seeds, same noise)
#   docs/img/sqnr.png           ε SQNR int8 vs float per timestep along float trajectories
# and prints the compare figures (ε SQNR, PSNR, FID, recognisable fraction) and
# the per-step bench. Usage: scripts/pictures.sh   (env: DDPM_SEED, default 1;
# DDPM_SAMPLES, compare's -n, default 1024)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

SEED="${DDPM_SEED:-1}"
N="${DDPM_SAMPLES:-1024}"
conv() { cargo run --release -q -p ddpm-converter -- "$@"; }
mkdir -p docs/img

step "quantize models/mnist_unet.onnx -> $DDPM_ARTIFACT"
conv quantize models/mnist_unet.onnx -o "$DDPM_ARTIFACT" --quiet

step "samples (DDIM 20 steps, seeds $SEED..$((SEED + 31)))"
conv sample "$DDPM_ARTIFACT" --engine int8 --mode ddim --steps 20 --seed "$SEED" -n 32 \
    -o docs/img/samples_int8.png
conv sample "$DDPM_ARTIFACT" --engine tract --model models/mnist_unet.onnx --mode ddim \
    --steps 20 --seed "$SEED" -n 32 -o docs/img/samples_float.png

step "compare (n = $N) -> docs/img/sqnr.png"
conv compare models/mnist_unet.onnx "$DDPM_ARTIFACT" -n "$N" --seed "$SEED" \
    --plot docs/img/sqnr.png | tee "$DDPM_OUT/compare.txt"

step "bench"
conv bench "$DDPM_ARTIFACT" --model models/mnist_unet.onnx | tee "$DDPM_OUT/bench.txt"
