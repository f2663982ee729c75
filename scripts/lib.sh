# Shared helpers for scripts/build-images, load-images, up and down (sourced, not run).
# shellcheck shell=bash
# shellcheck disable=SC2034  # the settings below are used by the scripts that source this file
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${AIRFLOW_HA_CACHE:-$HOME/.cache/airflow-ha}"
STATE="$CACHE/up.state"                       # what scripts/up started, for scripts/down
SHARED_KUBE="${AIRFLOW_HA_SHARED_KUBE:-$ROOT/../shared/kube}"
KUBECTL="$ROOT/.tools/bin/kubectl"
HELM="$ROOT/.tools/bin/helm"
VERSION="$(cat "$ROOT/VERSION")"                # the package, the chart's appVersion and the image tag
AIRFLOW_IMAGE="${AIRFLOW_HA_AIRFLOW_IMAGE:-airflow-ha/airflow:$VERSION}"
REDIS_IMAGE="${AIRFLOW_HA_REDIS_IMAGE:-airflow-ha/redis:8}"
MYSQL_IMAGE="${AIRFLOW_HA_MYSQL_IMAGE:-airflow-ha/mysql:9.7}"
HAPROXY_IMAGE="${AIRFLOW_HA_HAPROXY_IMAGE:-airflow-ha/haproxy:2.6}"            # mysql.mode groupReplication
STATSD_EXPORTER_VERSION="0.31.0"                                                 # prometheus/statsd_exporter
STATSD_IMAGE="${AIRFLOW_HA_STATSD_IMAGE:-airflow-ha/statsd-exporter:$STATSD_EXPORTER_VERSION}"  # metrics.enabled
SEAWEEDFS_VERSION="4.53"                                                         # logStore (remote task logs)
SEAWEEDFS_MODULE_VERSION="v0.0.0-20261109003541-7506e5f91cd6"                    # its Go module's version of 4.53
SEAWEEDFS_IMAGE="${AIRFLOW_HA_SEAWEEDFS_IMAGE:-airflow-ha/seaweedfs:$SEAWEEDFS_VERSION}"
BASE_IMAGE="${AIRFLOW_HA_BASE_IMAGE:-airflow-ha/debian:bookworm}"                 # the Airflow image's
SERVER_BASE_IMAGE="${AIRFLOW_HA_SERVER_BASE_IMAGE:-airflow-ha/debian:unstable}"   # Redis 8, MySQL 9.7
RELEASE="${AIRFLOW_HA_RELEASE:-airflow-ha}"
NAMESPACE="${AIRFLOW_HA_NAMESPACE:-airflow-ha}"
KIND_CLUSTER="${AIRFLOW_HA_KIND_CLUSTER:-airflow-ha}"
mkdir -p "$CACHE"

log()  { echo "[$(date -u +%H:%M:%S)] ${0##*/}: $*" >&2; }
die()  { log "ERROR: $*"; exit 1; }
now()  { date +%s; }
# phase NAME START: print how long a phase took (the timings CI logs show).
phase() { log "phase '$1' took $(( $(now) - $2 )) s"; }

state_get() { [ -f "$STATE" ] && sed -n "s/^$1=//p" "$STATE" | tail -1; }
state_set() { touch "$STATE"; sed -i "/^$1=/d" "$STATE"; echo "$1=$2" >>"$STATE"; }

# ensure_docker: a reachable Docker Engine; starts dockerd (root only) when none answers and records
# that in the state file so scripts/down can stop it again.
ensure_docker() {
    command -v docker >/dev/null || die "docker is not installed (apt-get install -y docker.io)"
    if docker info >/dev/null 2>&1; then return; fi
    if [ "$(id -u)" != 0 ] || ! command -v dockerd >/dev/null; then
        die "no Docker daemon answers and this user cannot start dockerd (start it, or set DOCKER_HOST)"
    fi
    log "starting dockerd (log: $CACHE/dockerd.log)"
    setsid dockerd >>"$CACHE/dockerd.log" 2>&1 </dev/null &
    echo $! >"$CACHE/dockerd.pid"
    state_set STARTED_DOCKERD "$!"
    for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
    die "dockerd did not answer within 60 s; see $CACHE/dockerd.log"
}

# docker_build ARGS...: `docker build` with BuildKit (needed for --secret and cache mounts). A Docker
# CLI >= 23 without the buildx plugin cannot use BuildKit; Debian's docker.io client (/usr/bin/docker,
# 20.10) can, through DOCKER_BUILDKIT=1, so prefer it in that case.
docker_build() {
    local cli=docker
    if ! docker buildx version >/dev/null 2>&1; then
        local major
        major="$(docker version -f '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)"
        if [ "${major:-0}" -ge 23 ] 2>/dev/null; then
            if [ -x /usr/bin/docker ] && [ "$(/usr/bin/docker version -f '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)" -lt 23 ] 2>/dev/null; then
                cli=/usr/bin/docker
            else
                die "BuildKit is needed: install the docker buildx plugin (docker-buildx) or Debian's docker.io client"
            fi
        fi
    fi
    DOCKER_BUILDKIT=1 "$cli" build "$@"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

# kube_reachable: the cluster in KUBECONFIG answers /readyz (10 s).
kube_reachable() {
    [ -x "$KUBECTL" ] || python3 "$ROOT/tools/bootstrap.py" >/dev/null
    "$KUBECTL" get --raw=/readyz --request-timeout=10s >/dev/null 2>&1
}

# cluster_flavour: kubeone | kind | other, for the cluster in KUBECONFIG.
cluster_flavour() {
    local ctx server
    ctx="$("$KUBECTL" config current-context 2>/dev/null || true)"
    server="$("$KUBECTL" config view --minify -o jsonpath='{.clusters[0].name}' 2>/dev/null || true)"
    if [[ "$ctx" == kind-* ]]; then echo kind
    elif [[ "$ctx" == kubeone* || "$server" == kubeone* ]]; then echo kubeone
    else echo other; fi
}
