#!/usr/bin/env bash
# Checks the toolchains vnest builds with and says how to get what is missing.
# Go builds only the upstream test binaries; Rust builds vnest.
set -euo pipefail
missing=0
if ! command -v go >/dev/null; then
  echo "missing: go (>= 1.22; the pinned go.mod then fetches the exact toolchain through the Go module proxy)" >&2
  missing=1
fi
if ! command -v cargo >/dev/null; then
  echo "missing: cargo (stable Rust >= 1.89, e.g. from rustup)" >&2
  missing=1
else
  cargo fmt --version >/dev/null 2>&1 || { echo "missing: rustfmt (rustup component add rustfmt)" >&2; missing=1; }
  cargo clippy --version >/dev/null 2>&1 || { echo "missing: clippy (rustup component add clippy)" >&2; missing=1; }
fi
exit "$missing"
