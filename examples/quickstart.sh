#!/usr/bin/env bash
# A real rotation of a local PostgreSQL role with the file store.
#
#   examples/quickstart.sh
#
# With REKEY_PG_ADMIN_URL set (postgres://admin:pw@host:port/db, password authentication
# enforced), it uses that server; otherwise it starts a throwaway PostgreSQL cluster with
# SCRAM-SHA-256 authentication on a free 127.0.0.1 port and removes it at the end.
# Everything else lives in a temporary directory that is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; }

# Never a pager: the last psql must not wait for a key on a terminal.
export PAGER=cat PSQL_PAGER=cat
# Cargo's own output directory: CARGO_TARGET_DIR when set (relative to this checkout).
target_dir="${CARGO_TARGET_DIR:-target}"
case "$target_dir" in /*) ;; *) target_dir="$PWD/$target_dir" ;; esac
echo "building rekey (release; a few minutes the first time) into $target_dir ..." >&2
cargo build --release -p rekey -p rekey-testbed
REKEY="$target_dir/release/rekey"
TESTBED="$target_dir/release/rekey-testbed"
work=$(mktemp -d)
chmod 711 "$work"   # the throwaway cluster runs as the postgres user and must traverse it
started_pg=""
cleanup() {
  if [ -n "$started_pg" ]; then "$TESTBED" pg-stop --dir "$work/pg" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${REKEY_PG_ADMIN_URL:-}" ]; then
  echo "starting a throwaway PostgreSQL cluster (scram-sha-256) ..." >&2
  eval "$("$TESTBED" pg-start --dir "$work/pg")"
  started_pg=1
fi
export REKEY_PG_ADMIN_URL

# The role the application uses, with a password that is about to "leak".
role="orders_app_$$"
initial="$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')"
psql "$REKEY_PG_ADMIN_URL" -X -q -v ON_ERROR_STOP=1 \
  -c "SET log_statement = 'none'" -c "CREATE ROLE \"$role\" LOGIN PASSWORD '$initial'" >/dev/null
trap 'psql "$REKEY_PG_ADMIN_URL" -q -c "DROP ROLE IF EXISTS \"$role\"" >/dev/null 2>&1 || true; cleanup' EXIT

host_port=$(psql "$REKEY_PG_ADMIN_URL" -Atc "SELECT host(inet_server_addr()) || ' ' || inet_server_port()")
read -r host port <<<"$host_port"

cat >"$work/rekey.toml" <<TOML
[defaults]
audit_log = "rekey-audit.jsonl"
password = { length = 32 }

[stores.local]
type = "file"
path = "secrets.json"

[[credentials]]
name = "orders-db"
store = "local"
key = "orders/db"
strategy = "single"
tags = ["prod"]
target = { type = "postgres", host = "$host", port = $port, dbname = "postgres",
           username = "$role", admin = "\${REKEY_PG_ADMIN_URL}", sslmode = "prefer" }
TOML
cd "$work"
export REKEY_CONFIG="$work/rekey.toml"

step "printf %s \"\$PASSWORD\" | rekey import orders-db"
printf %s "$initial" | "$REKEY" import orders-db
step "rekey plan"
"$REKEY" plan
step "rekey rotate orders-db"
"$REKEY" rotate orders-db
step "rekey verify"
"$REKEY" verify
step "rekey status"
"$REKEY" status

new="$("$REKEY" get orders-db --field password)"
step "check: the old password is refused, the new one works"
if PGPASSWORD="$initial" psql -h "$host" -p "$port" -U "$role" -d postgres -w -Atc 'select 1' >/dev/null 2>&1; then
  echo "FAIL: the old password still works" >&2; exit 1
fi
PGPASSWORD="$new" psql -X -P pager=off -h "$host" -p "$port" -U "$role" -d postgres -w -Atc "select 'new password works for ' || current_user"
echo "old password refused; audit log: $(wc -l < rekey-audit.jsonl) lines, no secret values" >&2
