#!/usr/bin/env bash
# Runs every check and test of the workspace. Installs what a fresh machine lacks
# (PostgreSQL server binaries for throwaway clusters with password authentication,
# moto's server for the AWS APIs, the Vault-compatible server rvault), then:
# formatting, clippy, all tests against real servers, and the quickstart. MariaDB (:3306) and Redis
# (:6379) are expected to be running, as on the project's machines.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null; then
  echo "installing PostgreSQL server binaries ..." >&2
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

if ! command -v moto_server >/dev/null && ! python3 -c 'import moto.server' 2>/dev/null; then
  echo "installing moto[server] ..." >&2
  python3 -m pip install --quiet 'moto[server]'
fi

if ! command -v rvault >/dev/null && [ ! -x "$HOME/.cargo/bin/rvault" ]; then
  echo "building rvault (rusty_vault; about 10 minutes on 2 cores) ..." >&2
  cargo install --locked --quiet rusty_vault
fi
export PATH="$PATH:$HOME/.cargo/bin"

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
cargo test --workspace

# The README's first command: a real rotation with a throwaway PostgreSQL.
examples/quickstart.sh
