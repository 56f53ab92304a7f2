#!/bin/bash
# One-shot: creates the stack's secrets on first start, then hands each
# service only the files it needs.
#
#   gen-secrets.sh MASTER OUT
#
# MASTER (the `secrets` volume) keeps every value: existing files are kept,
# so restarts and `up` after `down` reuse them; `down -v` deletes them
# together with the data they protect. OUT holds one folder per consuming
# service (each its own volume, mounted only into that service); they are
# rewritten from MASTER on every start. Nothing is ever committed.
set -euo pipefail
umask 022
master=${1:?usage: gen-secrets.sh MASTER OUT}
out=${2:?usage: gen-secrets.sh MASTER OUT}
random() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
for name in db-root-password db-app-password db-migrate-password admin-token redis-password; do
  if [ ! -s "$master/$name" ]; then
    random > "$master/$name.tmp"
    mv "$master/$name.tmp" "$master/$name"
    echo "created $name"
  fi
done
hand_out() { # service name...
  local service=$1 name; shift
  for name in "$@"; do
    cp "$master/$name" "$out/$service/$name.tmp"
    # Readable by the service's user (mysql 999, redis 999, nonroot 65532).
    chmod 0444 "$out/$service/$name.tmp"
    mv "$out/$service/$name.tmp" "$out/$service/$name"
  done
}
hand_out db db-root-password db-app-password db-migrate-password
hand_out migrate db-migrate-password
hand_out hardware db-app-password admin-token redis-password
hand_out redis redis-password
echo "secrets handed out"
