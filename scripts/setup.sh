#!/usr/bin/env bash
# Installs what building, testing and running ddpm-edge needs on a Debian machine
# with rustup: the cross targets, QEMU, the aarch64 linker, defmt-print, and for
# the fuzz smoke a nightly toolchain and cargo-fuzz.
# Safe to run again: each step is skipped when already done.
set -euo pipefail

targets=(thumbv6m-none-eabi thumbv7em-none-eabihf thumbv8m.main-none-eabihf aarch64-unknown-linux-gnu)
installed=$(rustup target list --installed)
for t in "${targets[@]}"; do
    grep -qx "$t" <<<"$installed" || rustup target add "$t"
done
rustup component list --installed | grep -q '^rustfmt' || rustup component add rustfmt
rustup component list --installed | grep -q '^clippy' || rustup component add clippy

need_apt=()
command -v qemu-system-arm >/dev/null || need_apt+=(qemu-system-arm)
command -v qemu-aarch64 >/dev/null || need_apt+=(qemu-user)
command -v aarch64-linux-gnu-gcc >/dev/null || need_apt+=(gcc-aarch64-linux-gnu)
if ((${#need_apt[@]})); then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

command -v defmt-print >/dev/null || cargo install defmt-print --locked --quiet
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
