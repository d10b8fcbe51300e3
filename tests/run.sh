#!/usr/bin/env bash
# Runs every check and test of the workspace. Installs what a fresh machine lacks
# (PostgreSQL server binaries, used to start throwaway clusters with password
# authentication), then: formatting, clippy, and all tests against real servers.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null; then
  echo "installing PostgreSQL server binaries ..." >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace
