#!/bin/bash
# Stand-in entrypoint: initialise an empty data directory the way the official
# image does (root password from a file, root@MARIADB_ROOT_HOST (default '%')
# besides root@localhost, database, healthcheck user, initdb scripts against a
# temporary server with networking off), then run mariadbd.
set -euo pipefail
datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock

file_env() {
  local var=$1 file_var="${1}_FILE"
  if [ -n "${!file_var:-}" ]; then
    export "$var"="$(cat "${!file_var}")"
  fi
}

if [ ! -d "$datadir/mysql" ]; then
  file_env MARIADB_ROOT_PASSWORD
  : "${MARIADB_ROOT_PASSWORD:?MARIADB_ROOT_PASSWORD or MARIADB_ROOT_PASSWORD_FILE is required}"
  echo "stand-in: initialising $datadir"
  mariadb-install-db --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db --rpm > /dev/null
  mariadbd --datadir="$datadir" --skip-networking --socket="$socket" --skip-log-bin &
  pid=$!
  for _ in $(seq 60); do
    mariadb --protocol=socket -S "$socket" -uroot -e 'SELECT 1' > /dev/null 2>&1 && break
    sleep 0.5
  done
  health_password=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # The root password travels as hex, quoted by the server: any character works.
  root_hex=$(printf '%s' "$MARIADB_ROOT_PASSWORD" | od -An -v -tx1 | tr -d ' \n')
  root_host=${MARIADB_ROOT_HOST:-%}
  extra_root=""
  if [ "$root_host" != localhost ]; then
    # What the official image does by default: root from anywhere too.
    extra_root="EXECUTE IMMEDIATE CONCAT('CREATE USER ''root''@''${root_host}'' IDENTIFIED BY ', QUOTE(CONVERT(X'${root_hex}' USING utf8mb4)));
GRANT ALL ON *.* TO 'root'@'${root_host}' WITH GRANT OPTION;"
  fi
  mariadb --protocol=socket -S "$socket" -uroot <<SQL
-- As the official image: the install's other root accounts go.
DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1';
EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS ''root''@''', @@hostname, '''');
EXECUTE IMMEDIATE CONCAT('ALTER USER ''root''@''localhost'' IDENTIFIED BY ', QUOTE(CONVERT(X'${root_hex}' USING utf8mb4)));
${extra_root}
CREATE DATABASE IF NOT EXISTS \`${MARIADB_DATABASE:-test}\`;
CREATE USER 'healthcheck'@'127.0.0.1' IDENTIFIED BY '${health_password}';
CREATE USER 'healthcheck'@'localhost' IDENTIFIED BY '${health_password}';
FLUSH PRIVILEGES;
SQL
  printf '[mariadb-client]\nport=3306\nsocket=%s\nuser=healthcheck\npassword=%s\n' \
    "$socket" "$health_password" > "$datadir/.my-healthcheck.cnf"
  chmod 0600 "$datadir/.my-healthcheck.cnf"
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "stand-in: running $f"; bash "$f" ;;
      *.sql) echo "stand-in: running $f"; MYSQL_PWD=$MARIADB_ROOT_PASSWORD mariadb --protocol=socket -S "$socket" -uroot "${MARIADB_DATABASE:-}" < "$f" ;;
    esac
  done
  kill "$pid"
  wait "$pid" || true
  echo "stand-in: initialised"
fi

if [ "${1:-}" = "mariadbd" ]; then
  shift
  exec mariadbd --datadir="$datadir" --socket="$socket" --bind-address=0.0.0.0 \
    --port=3306 --skip-log-bin --skip-name-resolve "$@"
fi
exec "$@"
