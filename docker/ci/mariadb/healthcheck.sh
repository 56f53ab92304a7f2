#!/bin/bash
# Stand-in for the official image's healthcheck.sh, for the two checks our
# compose file uses: --connect (a TCP connection succeeds) and
# --innodb_initialized (the InnoDB engine is up).
set -eu
cnf=/var/lib/mysql/.my-healthcheck.cnf
[ -r "$cnf" ] || exit 1
args=(--defaults-extra-file="$cnf" --skip-column-names --batch)
sql="SELECT 1"
for check in "$@"; do
  case "$check" in
    --connect) args+=(--protocol=tcp -h 127.0.0.1) ;;
    --innodb_initialized) sql="SELECT 1 FROM information_schema.ENGINES WHERE engine = 'InnoDB' AND support IN ('YES', 'DEFAULT')" ;;
    *) echo "unsupported check $check" >&2; exit 2 ;;
  esac
done
[ "$(mariadb "${args[@]}" -e "$sql" 2>/dev/null)" = "1" ]
