#!/usr/bin/env bash
# The main job on the embedded default: convert the shipped MNIST UNet to an int8
# artifact, run the firmware on a QEMU Cortex-M4 (DDIM, 20 steps), print its
# benchmark, and write a PNG of samples from the same artifact.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

step "setup (rustup targets, qemu-system-arm, qemu-user, gcc-aarch64-linux-gnu, defmt-print)"
scripts/setup.sh

step "convert models/mnist_unet.onnx -> $DDPM_ARTIFACT"
cargo run --release -p ddpm-converter -- quantize models/mnist_unet.onnx -o "$DDPM_ARTIFACT"
cargo run --release -p ddpm-converter -- inspect "$DDPM_ARTIFACT"

step "firmware on QEMU mps2-an386 (Cortex-M4), seed ${DDPM_SEED:-1}"
(cd firmware && CARGO_TARGET_DIR="$DDPM_FW_TARGET_DIR" cargo run --release) | tee "$DDPM_OUT/firmware.log"

step "samples -> $DDPM_OUT/samples.png"
cargo run --release -p ddpm-converter -- sample "$DDPM_ARTIFACT" --engine int8 --mode ddim --steps 20 \
    --seed "${DDPM_SEED:-1}" -n 16 -o "$DDPM_OUT/samples.png"
grep -E '^(DIGEST|BENCH)' "$DDPM_OUT/firmware.log" || true
