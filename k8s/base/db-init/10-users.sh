#!/bin/bash
# Runs once, on an empty data volume, inside the MariaDB image's entrypoint.
# Least privilege: the serving user may read and write rows, nothing else;
# only the migrating user may change the schema. Nobody connects as root.
set -euo pipefail
app_password=$(cat /run/secrets/db-app-password)
migrate_password=$(cat /run/secrets/db-migrate-password)
mariadb --protocol=socket -uroot -p"$(cat /run/secrets/db-root-password)" <<SQL
CREATE USER IF NOT EXISTS 'hardware_app'@'%' IDENTIFIED BY '${app_password}';
GRANT SELECT, INSERT, UPDATE, DELETE ON \`${MARIADB_DATABASE}\`.* TO 'hardware_app'@'%';
CREATE USER IF NOT EXISTS 'hardware_migrate'@'%' IDENTIFIED BY '${migrate_password}';
GRANT ALL PRIVILEGES ON \`${MARIADB_DATABASE}\`.* TO 'hardware_migrate'@'%';
FLUSH PRIVILEGES;
SQL
# Kubernetes' prod overlay dumps the database nightly as a read-only user.
if [ -s /run/secrets/db-backup-password ]; then
  backup_password=$(cat /run/secrets/db-backup-password)
  mariadb --protocol=socket -uroot -p"$(cat /run/secrets/db-root-password)" <<SQL
CREATE USER IF NOT EXISTS 'hardware_backup'@'%' IDENTIFIED BY '${backup_password}';
GRANT SELECT, LOCK TABLES, SHOW VIEW, TRIGGER, EVENT ON \`${MARIADB_DATABASE}\`.* TO 'hardware_backup'@'%';
FLUSH PRIVILEGES;
SQL
fi
