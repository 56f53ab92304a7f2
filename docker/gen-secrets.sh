#!/bin/bash
# One-shot: creates the stack's secrets in the `secrets` volume on first start.
# Existing files are kept, so restarts and `up` after `down` reuse them; `down -v`
# deletes them together with the data they protect. Nothing is ever committed.
set -euo pipefail
umask 022
dir=${1:-/run/secrets}
random() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
for name in db-root-password db-app-password db-migrate-password admin-token; do
  if [ ! -s "$dir/$name" ]; then
    random > "$dir/$name.tmp"
    # Readable by the service users (mysql, 65532); the volume is mounted only
    # into the stack's own containers.
    chmod 0444 "$dir/$name.tmp"
    mv "$dir/$name.tmp" "$dir/$name"
    echo "created $name"
  fi
done
