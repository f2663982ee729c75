#!/bin/sh
# The official haproxy image's entrypoint: `IMAGE -f cfg` means `haproxy -f cfg`; haproxy runs in
# master-worker mode (-W) in the foreground (-db); anything else (sh, haproxy -c ...) is exec'd as given.
set -e
case "$1" in
    -*) set -- haproxy "$@" ;;
esac
if [ "$1" = haproxy ]; then
    shift
    set -- haproxy -W -db "$@"
fi
exec "$@"
