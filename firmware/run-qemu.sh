#!/usr/bin/env bash
# Cargo runner for the firmware (see .cargo/config.toml): `run-qemu.sh ELF`.
#
# The ELF carries a board tag (src/board/mod.rs), e.g.
# `qemu:mps2-an505:cortex-m33` for qemu-m33. QEMU profiles run under
# qemu-system-arm with semihosting, the defmt stream decoded by defmt-print;
# the exit status is QEMU's, i.e. the firmware's semihosting exit code.
# Real boards (pico, stm32h743) are handed to `probe-rs run`.
#
# Environment: DDPM_QEMU_TIMEOUT (seconds, default 1800),
#              DDPM_DEFMT_RAW=1 writes the undecoded defmt stream to stdout.
set -euo pipefail

elf=${1:?usage: run-qemu.sh path/to/elf}
shift || true

tag=$(LC_ALL=C grep -aoE 'DDPM_BOARD=[a-z0-9:_-]+;' "$elf" | head -n1 || true)
if [ -z "$tag" ]; then
    echo "run-qemu.sh: no DDPM_BOARD tag in $elf (not a ddpm-firmware image?)" >&2
    exit 2
fi
tag=${tag#DDPM_BOARD=}
tag=${tag%;}
kind=${tag%%:*}
rest=${tag#*:}

find_tool() {
    if command -v "$1" >/dev/null 2>&1; then command -v "$1"
    elif [ -x "$HOME/.cargo/bin/$1" ]; then echo "$HOME/.cargo/bin/$1"
    else
        echo "run-qemu.sh: $1 not found; $2" >&2
        exit 127
    fi
}

case "$kind" in
qemu)
    machine=${rest%%:*}
    cpu=${rest#*:}
    qemu=$(find_tool qemu-system-arm "install it (Debian: apt-get install qemu-system-arm)")
    qemu_cmd=(timeout "${DDPM_QEMU_TIMEOUT:-1800}" "$qemu" -cpu "$cpu" -machine "$machine" -nographic
        -monitor none -serial null
        -semihosting-config enable=on,target=native -icount shift=0 -kernel "$elf")
    if [ "${DDPM_DEFMT_RAW:-0}" = 1 ]; then
        exec "${qemu_cmd[@]}"
    fi
    defmt_print=$(find_tool defmt-print "install it with: cargo install defmt-print --locked")
    "${qemu_cmd[@]}" | "$defmt_print" -e "$elf"
    ;;
probe-rs)
    probe_rs=$(find_tool probe-rs "see README.md (Flashing real boards)")
    exec "$probe_rs" run --chip "$rest" "$elf" "$@"
    ;;
*)
    echo "run-qemu.sh: unknown board tag '$tag'" >&2
    exit 2
    ;;
esac
