#!/bin/bash
# Creates k8s/base/secrets/ with random values for the secretGenerator, once.
# These files are git-ignored; keep them (or your own values) safe: they are
# the database and admin credentials of the cluster deployment.
set -euo pipefail
dir="$(cd "$(dirname "$0")" && pwd)/base/secrets"
mkdir -p "$dir"
chmod 0700 "$dir"
for name in db-root-password db-app-password db-migrate-password db-backup-password admin-token redis-password; do
  if [ ! -s "$dir/$name" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$dir/$name"
    chmod 0600 "$dir/$name"
    echo "created $dir/$name"
  fi
done
