#!/bin/bash
# The official mysql image's entrypoint contract for Debian's MySQL 9.7 (see the Dockerfile).
# On first start (no /var/lib/mysql/mysql) it initialises the data directory as the official image does:
#   MYSQL_ROOT_PASSWORD | MYSQL_ALLOW_EMPTY_PASSWORD | MYSQL_RANDOM_ROOT_PASSWORD  (one is required)
#   MYSQL_DATABASE, MYSQL_USER + MYSQL_PASSWORD, MYSQL_ROOT_HOST (default %)
#   each also as *_FILE (read from a file)
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once, in name order
# Time zone tables are not loaded (MYSQL_INITDB_SKIP_TZINFO is implied): Airflow stores UTC.
set -eo pipefail
shopt -s nullglob
trap 'log "ERROR: exit $? at line $LINENO: $BASH_COMMAND"' ERR

log()  { echo "$(date -u +%FT%TZ) [entrypoint] $*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

# file_env VAR: VAR from VAR or from the file named by VAR_FILE.
file_env() {
    local var="$1" file="${1}_FILE" value=""
    if [ -n "${!var:-}" ] && [ -n "${!file:-}" ]; then
        fail "both $var and $file are set (they are exclusive)"
    fi
    if [ -n "${!var:-}" ]; then
        value="${!var}"
    elif [ -n "${!file:-}" ]; then
        [ -r "${!file}" ] || fail "${file}=${!file} is not a readable file"
        value="$(<"${!file}")"
    fi
    export "$var"="$value"
    unset "$file"
}

# Official-image behaviour: `IMAGE --some-option` means `mysqld --some-option`.
if [ "${1:0:1}" = '-' ]; then
    set -- mysqld "$@"
fi
if [ "$1" != mysqld ]; then
    exec "$@"   # mysql, mysqladmin, bash, ...
fi

DATADIR=/var/lib/mysql
SOCKET=/var/run/mysqld/mysqld.sock
[ -w "$DATADIR" ] || fail "$DATADIR is not writable by uid $(id -u) (set fsGroup/securityContext, or chown the volume to 999)"

if [ ! -d "$DATADIR/mysql" ]; then
    for v in MYSQL_ROOT_PASSWORD MYSQL_ALLOW_EMPTY_PASSWORD MYSQL_RANDOM_ROOT_PASSWORD MYSQL_DATABASE \
             MYSQL_USER MYSQL_PASSWORD MYSQL_ROOT_HOST; do
        file_env "$v"
    done
    if [ -z "$MYSQL_ROOT_PASSWORD" ] && [ -z "$MYSQL_ALLOW_EMPTY_PASSWORD" ] && [ -z "$MYSQL_RANDOM_ROOT_PASSWORD" ]; then
        fail "database is uninitialized and password option is not specified: set one of MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD and MYSQL_RANDOM_ROOT_PASSWORD"
    fi
    if [ "$MYSQL_USER" = root ]; then
        fail "MYSQL_USER=root: root is created already; set MYSQL_ROOT_PASSWORD for it instead"
    fi
    if [ -n "$MYSQL_USER" ] && [ -z "$MYSQL_PASSWORD" ]; then
        fail "MYSQL_USER is set but MYSQL_PASSWORD is empty"
    fi
    if [ -n "$MYSQL_RANDOM_ROOT_PASSWORD" ]; then
        MYSQL_ROOT_PASSWORD="$(set +o pipefail; tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)"
        log "GENERATED ROOT PASSWORD: $MYSQL_ROOT_PASSWORD"
    fi
    MYSQL_ROOT_HOST="${MYSQL_ROOT_HOST:-%}"
    # --initialize wants an empty directory; a fresh volume may hold lost+found (ext4) - nothing else.
    leftovers="$(find "$DATADIR" -mindepth 1 -maxdepth 1 ! -name lost+found | head -3)"
    [ -z "$leftovers" ] || fail "$DATADIR has files but no mysql/ system schema (a half-initialised volume?): $leftovers"

    log "initializing database files in $DATADIR"
    # As uid 999 on a root-owned volume (local-path: 0777) mysqld cannot chown it, and needs not: the
    # files it makes are its own. The chart's server args (character set, ...) apply to the dictionary.
    "$@" --initialize-insecure --datadir="$DATADIR" --log-error-verbosity=1 \
        || fail "mysqld --initialize-insecure failed"

    log "starting a temporary server (no networking)"
    "$@" --skip-networking --socket="$SOCKET" --datadir="$DATADIR" &
    pid=$!
    for _ in $(seq 120); do
        mysqladmin --socket="$SOCKET" -uroot ping >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || fail "temporary server exited during initialization"
        sleep 0.5
    done
    mysqladmin --socket="$SOCKET" -uroot ping >/dev/null 2>&1 || fail "temporary server did not start in 60 s"

    sql_escape() { printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g"; }
    rootpw="$(sql_escape "$MYSQL_ROOT_PASSWORD")"
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '${rootpw}';"
        if [ "$MYSQL_ROOT_HOST" != localhost ]; then
            echo "CREATE USER 'root'@'$(sql_escape "$MYSQL_ROOT_HOST")' IDENTIFIED BY '${rootpw}';"
            echo "GRANT ALL ON *.* TO 'root'@'$(sql_escape "$MYSQL_ROOT_HOST")' WITH GRANT OPTION;"
        fi
        if [ -n "$MYSQL_DATABASE" ]; then
            echo "CREATE DATABASE IF NOT EXISTS \`${MYSQL_DATABASE//\`/\`\`}\`;"
        fi
        if [ -n "$MYSQL_USER" ]; then
            echo "CREATE USER '$(sql_escape "$MYSQL_USER")'@'%' IDENTIFIED BY '$(sql_escape "$MYSQL_PASSWORD")';"
            if [ -n "$MYSQL_DATABASE" ]; then
                echo "GRANT ALL ON \`${MYSQL_DATABASE//\`/\`\`}\`.* TO '$(sql_escape "$MYSQL_USER")'@'%';"
            fi
        fi
        echo "FLUSH PRIVILEGES;"
    } | mysql --protocol=socket --socket="$SOCKET" -uroot || fail "could not set up users and database"

    export MYSQL_PWD="$MYSQL_ROOT_PASSWORD"
    client=(mysql --protocol=socket --socket="$SOCKET" -uroot)
    [ -n "$MYSQL_DATABASE" ] && client+=("$MYSQL_DATABASE")
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)     log "running $f"
                      # shellcheck source=/dev/null  # the official image's contract: init scripts are sourced
                      . "$f" ;;
            *.sql)    log "running $f"; "${client[@]}" <"$f" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | "${client[@]}" ;;
            *)        log "ignoring $f" ;;
        esac
    done

    mysqladmin --socket="$SOCKET" -uroot shutdown
    unset MYSQL_PWD
    wait "$pid" || true
    log "initialization done"
fi

log "starting $*"
exec "$@"
