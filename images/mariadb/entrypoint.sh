#!/bin/bash
# A mysql-image-compatible entrypoint for Debian's MariaDB 10.11 (see the Dockerfile).
# On first start (no /var/lib/mysql/mysql) it initialises the data directory the way the official
# mysql image does:
#   MYSQL_ROOT_PASSWORD | MYSQL_ALLOW_EMPTY_PASSWORD | MYSQL_RANDOM_ROOT_PASSWORD  (one is required)
#   MYSQL_DATABASE, MYSQL_USER + MYSQL_PASSWORD, MYSQL_ROOT_HOST (default %)
#   each also as *_FILE (read from a file) and as MARIADB_* (the mariadb image's names)
#   /docker-entrypoint-initdb.d/*.sh|*.sql|*.sql.gz run once, in name order
# MySQL-8-only server options a chart may pass (--default-authentication-plugin, --mysql-native-password,
# --mysqlx, ...) are given MariaDB's `--loose-` prefix: accepted and ignored, with a note on stderr.
set -eo pipefail
shopt -s nullglob
trap 'log "ERROR: exit $? at line $LINENO: $BASH_COMMAND"' ERR

log()  { echo "$(date -u +%FT%TZ) [entrypoint] $*" >&2; }
fail() { log "ERROR: $*"; exit 1; }

# file_env VAR: VAR from VAR, VAR_FILE, MARIADB_${VAR#MYSQL_} or MARIADB_${VAR#MYSQL_}_FILE.
file_env() {
    local var="$1" alt="MARIADB_${1#MYSQL_}" value="" v
    for v in "$var" "$alt"; do
        if [ -n "${!v:-}" ] && [ -n "$(eval echo "\${${v}_FILE:-}")" ]; then
            fail "both $v and ${v}_FILE are set (they are exclusive)"
        fi
        if [ -n "${!v:-}" ]; then value="${!v}"; break; fi
        local f="${v}_FILE"
        if [ -n "${!f:-}" ]; then
            [ -r "${!f}" ] || fail "${f}=${!f} is not a readable file"
            value="$(<"${!f}")"; break
        fi
    done
    export "$var"="$value"
    unset "${var}_FILE" "$alt" "${alt}_FILE"
}

# Official-image behaviour: `IMAGE --some-option` means `mysqld --some-option`.
if [ "${1:0:1}" = '-' ]; then
    set -- mysqld "$@"
fi
if [ "$1" != mysqld ] && [ "$1" != mariadbd ]; then
    exec "$@"   # mysql, mysqladmin, bash, ...
fi
shift
args=()
for a in "$@"; do
    case "$a" in
        --default-authentication-plugin*|--default_authentication_plugin*|--mysql-native-password*|\
        --mysql_native_password*|--authentication-policy*|--authentication_policy*|--mysqlx*|\
        --log-error-verbosity*|--log_error_verbosity*|--sql-require-primary-key*|--sql_require_primary_key*|\
        --innodb-dedicated-server*|--innodb_dedicated_server*|--skip-mysqlx|--admin-address*|--admin-port*)
            log "note: MySQL 8 option ${a%%=*} has no MariaDB equivalent: ignored (passed as --loose-)"
            args+=("--loose-${a#--}") ;;
        *) args+=("$a") ;;
    esac
done
set -- mariadbd "${args[@]}"

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

    log "initializing database files in $DATADIR"
    # No --user: as uid 999 it could not chown a volume the kubelet made root-owned (local-path: 0777).
    mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=normal \
        --skip-test-db --skip-name-resolve --rpm >/dev/null 2>&1 \
        || { mariadb-install-db --datadir="$DATADIR" --auth-root-authentication-method=normal \
                --skip-test-db --skip-name-resolve --rpm; fail "mariadb-install-db failed"; }

    log "starting a temporary server (no networking)"
    "$@" --skip-networking --socket="$SOCKET" --datadir="$DATADIR" &
    pid=$!
    for i in $(seq 60); do
        mariadb-admin --socket="$SOCKET" -uroot ping >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || fail "temporary server exited during initialization"
        sleep 1
    done
    mariadb-admin --socket="$SOCKET" -uroot ping >/dev/null 2>&1 || fail "temporary server did not start in 60 s"

    sql_escape() { printf '%s' "$1" | sed -e "s/\\\\/\\\\\\\\/g" -e "s/'/\\\\'/g"; }
    rootpw="$(sql_escape "$MYSQL_ROOT_PASSWORD")"
    {
        echo "SET @@SESSION.SQL_LOG_BIN=0;"
        echo "SET @@SESSION.SQL_MODE=REPLACE(@@SESSION.SQL_MODE, 'NO_BACKSLASH_ESCAPES', '');"
        echo "DROP USER IF EXISTS root@'127.0.0.1', root@'::1', ''@'localhost';"
        echo "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\'');"
        echo "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS \\'\\'@\\'', @@hostname, '\\'');"
        echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '${rootpw}';"
        if [ "$MYSQL_ROOT_HOST" != localhost ]; then
            echo "CREATE USER 'root'@'$(sql_escape "$MYSQL_ROOT_HOST")' IDENTIFIED BY '${rootpw}';"
            echo "GRANT ALL ON *.* TO 'root'@'$(sql_escape "$MYSQL_ROOT_HOST")' WITH GRANT OPTION;"
        fi
        echo "DROP DATABASE IF EXISTS test;"
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
    } | mariadb --protocol=socket --socket="$SOCKET" -uroot || fail "could not set up users and database"

    client=(mariadb --protocol=socket --socket="$SOCKET" -uroot -p"$MYSQL_ROOT_PASSWORD")
    [ -n "$MYSQL_DATABASE" ] && client+=("$MYSQL_DATABASE")
    for f in /docker-entrypoint-initdb.d/*; do
        case "$f" in
            *.sh)     log "running $f"; . "$f" ;;
            *.sql)    log "running $f"; "${client[@]}" <"$f" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | "${client[@]}" ;;
            *)        log "ignoring $f" ;;
        esac
    done

    mariadb-admin --socket="$SOCKET" -uroot -p"$MYSQL_ROOT_PASSWORD" shutdown
    wait "$pid" || true
    log "initialization done"
fi

log "starting $*"
exec "$@"
