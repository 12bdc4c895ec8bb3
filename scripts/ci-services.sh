#!/usr/bin/env bash
# Database servers for the external-store tests (DESIGN.md section 6): PostgreSQL on
# 127.0.0.1:5432 (trust auth, database `test`) and MariaDB on 127.0.0.1:3306 (root, empty
# password, database `test`). Installs what is missing, starts what is not running, waits until
# both accept connections, and makes sure the databases and roles exist. Safe to run again.
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null; then SUDO="sudo"; fi

missing=()
if ! ls /etc/postgresql/*/main >/dev/null 2>&1 || ! command -v psql >/dev/null; then missing+=(postgresql postgresql-client); fi
if [ ! -x /usr/sbin/mariadbd ] || ! command -v mysql >/dev/null; then missing+=(mariadb-server mariadb-client); fi
if ((${#missing[@]})); then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq "${missing[@]}"
fi

# ---- PostgreSQL ------------------------------------------------------------------------------
PG_VERSION="$(ls /etc/postgresql | sort -V | tail -1)"
HBA="/etc/postgresql/${PG_VERSION}/main/pg_hba.conf"
# Trust on the loopback (a fresh install asks for passwords over TCP): tests connect as postgres.
if ! grep -Eq '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$HBA"; then
  $SUDO sed -i -E 's/^(host\s+all\s+all\s+127\.0\.0\.1\/32\s+)\S+/\1trust/; s/^(local\s+all\s+\S+\s+)(peer|md5|scram-sha-256)/\1trust/' "$HBA"
  grep -Eq '^host\s+all\s+all\s+127\.0\.0\.1/32\s+trust' "$HBA" || echo 'host all all 127.0.0.1/32 trust' | $SUDO tee -a "$HBA" >/dev/null
  PG_RELOAD=1
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start || true
elif [ "${PG_RELOAD:-0}" = 1 ]; then
  $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main reload || true
fi
for _ in $(seq 1 60); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.5; done
pg_isready -h 127.0.0.1 -p 5432 || { echo "ci-services: PostgreSQL did not start" >&2; exit 1; }
psql_admin() { psql -h 127.0.0.1 -U postgres -d postgres -v ON_ERROR_STOP=1 -qtAc "$1"; }
[ "$(psql_admin "SELECT 1 FROM pg_database WHERE datname = 'test'")" = 1 ] || psql_admin "CREATE DATABASE test"
# A role named after the current user too (`root` here), so plain `psql` works as well.
ME="$(id -un)"
[ "$(psql_admin "SELECT 1 FROM pg_roles WHERE rolname = '${ME}'")" = 1 ] || psql_admin "CREATE ROLE \"${ME}\" LOGIN SUPERUSER"

# ---- MariaDB ---------------------------------------------------------------------------------
mysql_ok() { mysql -h 127.0.0.1 -P 3306 -uroot -e 'SELECT 1' >/dev/null 2>&1; }
if ! mysql_ok; then
  if ! pgrep -x mariadbd >/dev/null; then
    $SUDO mkdir -p /run/mysqld
    $SUDO chown mysql:mysql /run/mysqld 2>/dev/null || true
    $SUDO start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
  fi
  for _ in $(seq 1 60); do
    mysqladmin --protocol=socket -uroot ping >/dev/null 2>&1 && break
    mysqladmin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && break
    sleep 0.5
  done
  # Fresh installs give root unix-socket auth only: allow it over TCP with an empty password.
  if ! mysql_ok; then
    $SUDO mysql --protocol=socket -uroot -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
      CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;" || true
  fi
fi
mysql_ok || { echo "ci-services: MariaDB is not accepting root on 127.0.0.1:3306" >&2; exit 1; }
mysql -h 127.0.0.1 -uroot -e 'CREATE DATABASE IF NOT EXISTS test'
echo "ci-services: PostgreSQL ${PG_VERSION} and MariaDB ready"
