# Shared settings for the scripts (sourced). One release profile for everything;
# build output lives outside the clone so later runs reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/ddpm-edge/target}"
export DDPM_FW_TARGET_DIR="${DDPM_FW_TARGET_DIR:-$HOME/.cache/ddpm-edge/target-fw}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
export DDPM_OUT="${DDPM_OUT:-$ROOT/out}"
export DDPM_ARTIFACT="${DDPM_ARTIFACT:-$DDPM_OUT/mnist_unet.ddq}"
mkdir -p "$DDPM_OUT"
export PATH="$HOME/.cargo/bin:$PATH"
step() { printf '\n==> %s\n' "$*"; }
