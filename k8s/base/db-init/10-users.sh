#!/bin/bash
# Runs once, on an empty data volume, inside the MariaDB image's entrypoint.
# Least privilege: the serving user may read and write rows, nothing else;
# only the migrating user may change the schema. Nobody connects as root
# from outside (MARIADB_ROOT_HOST=localhost).
#
# Passwords never appear in a command line or inside a quoted SQL literal:
# each is sent as hex and quoted by the server (QUOTE), so a quote, a
# backslash or a `$` in a password is just a character of it. The root
# password reaches the client through MYSQL_PWD, set for that one command.
# (The entrypoint may source this file: nothing here is exported.)
set -euo pipefail
database=${MARIADB_DATABASE:?MARIADB_DATABASE is required}
# Tests point these elsewhere and read the SQL instead of running it.
secrets=${USERS_SECRETS_DIR:-/run/secrets}
if ! [[ $database =~ ^[A-Za-z0-9_]+$ ]]; then
  echo "10-users.sh: MARIADB_DATABASE must be letters, digits and _" >&2
  exit 1
fi

# The password in FILE as a SQL expression: CONVERT(X'<hex>' USING utf8mb4).
password_sql() {
  local file=$1 value
  value=$(cat "$file")
  value=${value%$'\r'}
  if [ -z "$value" ]; then
    echo "10-users.sh: $file is empty" >&2
    return 1
  fi
  printf "CONVERT(X'%s' USING utf8mb4)" "$(printf '%s' "$value" | od -An -v -tx1 | tr -d ' \n')"
}

# CREATE USER name IDENTIFIED BY <password of FILE>, then GRANT.
user_sql() {
  local name=$1 file=$2 grant=$3
  cat <<SQL
EXECUTE IMMEDIATE CONCAT('CREATE USER IF NOT EXISTS ''${name}''@''%'' IDENTIFIED BY ', QUOTE($(password_sql "$file")));
GRANT ${grant} ON \`${database}\`.* TO '${name}'@'%';
SQL
}

sql=$(
  user_sql hardware_app "$secrets/db-app-password" "SELECT, INSERT, UPDATE, DELETE"
  user_sql hardware_migrate "$secrets/db-migrate-password" "ALL PRIVILEGES"
  # Kubernetes' prod overlay dumps the database nightly as a read-only user.
  if [ -s "$secrets/db-backup-password" ]; then
    user_sql hardware_backup "$secrets/db-backup-password" "SELECT, LOCK TABLES, SHOW VIEW, TRIGGER, EVENT"
  fi
  echo "FLUSH PRIVILEGES;"
)
if [ "${USERS_PRINT_SQL:-}" = 1 ]; then
  printf '%s\n' "$sql"
  exit 0
fi
MYSQL_PWD=$(cat "$secrets/db-root-password") mariadb --protocol=socket -uroot <<< "$sql"
