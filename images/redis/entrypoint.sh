#!/bin/sh
# Official-redis-image-compatible entrypoint: `IMAGE --port 7000` and `IMAGE /etc/redis.conf` run
# redis-server; protected mode is turned off (as the official image does at compile time) unless the
# arguments mention it; anything else (redis-cli, sh -c ...) is exec'd as given.
set -e
case "$1" in
    -*|*.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ]; then
    case " $* " in
        *protected-mode*) ;;
        *) set -- "$@" --protected-mode no ;;
    esac
    umask 0077
fi
exec "$@"
