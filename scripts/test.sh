#!/usr/bin/env bash
# Every check of the project, as CI runs it (.ci/run calls this).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
start=$(date +%s)

step "setup (rustup targets, qemu-system-arm, qemu-user, gcc-aarch64-linux-gnu, defmt-print)"
scripts/setup.sh

step "format"
cargo fmt --all --check
(cd firmware && cargo fmt --check)

step "clippy (warnings denied)"
cargo clippy --release --workspace --all-targets -- -D warnings

step "no_std runtime builds for every Cortex-M target, default and defmt features"
for t in thumbv6m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf; do
    cargo build --release -p ddpm-runtime --target "$t"
    cargo build --release -p ddpm-runtime --target "$t" --features defmt
done
if grep -rnE '^\s*extern crate alloc' runtime/src; then
    echo "runtime must not use alloc" >&2
    exit 1
fi

step "convert the shipped model"
cargo run --release -p ddpm-converter -- quantize models/mnist_unet.onnx -o "$DDPM_ARTIFACT"
cargo run --release -p ddpm-converter -- inspect "$DDPM_ARTIFACT" --json > "$DDPM_OUT/inspect.json"

step "firmware: clippy and builds for every board profile (embeds the artifact)"
(
    cd firmware
    export CARGO_TARGET_DIR="$DDPM_FW_TARGET_DIR"
    cargo clippy --release -- -D warnings
    cargo build --release --no-default-features --features qemu-m7
    cargo build --release --no-default-features --features stm32h743
    cargo build --release --no-default-features --features pico --target thumbv6m-none-eabi
)

step "host tests (unit, end-to-end, firmware parity in QEMU, aarch64 under qemu-aarch64)"
cargo test --release --workspace

step "runtime unit tests with the plain kernels only (reference-kernels)"
cargo test --release -p ddpm-runtime --features reference-kernels,std --lib

if [ -x scripts/fuzz.sh ]; then
    step "fuzz smoke"
    CARGO_TARGET_DIR="$HOME/.cache/ddpm-edge/target-fuzz" scripts/fuzz.sh smoke
fi

echo "all checks passed in $(( $(date +%s) - start )) s"
