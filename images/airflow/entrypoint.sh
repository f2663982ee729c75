#!/bin/sh
# Entrypoint of every airflow-ha component (run under tini). It execs its arguments, so the chart's
# `args:` decide what runs: `airflow scheduler`, `airflow celery worker`, `airflow-ha ...`, `bash -c ...`.
# As in the official Airflow image, a bare Airflow subcommand is run through `airflow`
# (`docker run IMAGE version` == `docker run IMAGE airflow version`).
set -e
# Group-writable files (gid 0), so the image also works with an arbitrary uid in group 0.
umask 0002
if [ "$#" -eq 0 ]; then
    set -- airflow --help
fi
case "$1" in
    api-server|scheduler|dag-processor|triggerer|celery|db|dags|tasks|version|config|info|connections|\
    variables|pools|providers|jobs|plugins|standalone|cheat-sheet|rotate-fernet-key|assets|backfill|kerberos)
        set -- airflow "$@" ;;
esac
exec "$@"
