#!/usr/bin/env bash
# Make one of the project's Debian base images without a registry:
#   debootstrap --variant=minbase SUITE ROOTFS  ->  tar  ->  docker import airflow-ha/debian:SUITE
# Two suites are used: bookworm for the Airflow image (Debian 12's Python 3.11), unstable for the server
# images (MySQL 9.7 and Redis 8 exist only there; their packages need unstable's glibc).
# Idempotent: does nothing when the image exists (FORCE=1 rebuilds); the rootfs tarball is cached
# outside the repository (AIRFLOW_HA_CACHE, default ~/.cache/airflow-ha) so a pruned Docker engine
# re-imports it in seconds instead of re-running debootstrap (~30 s - 4 min).
#   SUITE       Debian suite (default bookworm; unstable for the servers)
#   BASE_IMAGE  tag to produce (default airflow-ha/debian:$SUITE)
#   MIRROR      Debian mirror (default http://deb.debian.org/debian)
set -euo pipefail
SUITE="${SUITE:-bookworm}"
BASE_IMAGE="${BASE_IMAGE:-airflow-ha/debian:$SUITE}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CACHE="${AIRFLOW_HA_CACHE:-$HOME/.cache/airflow-ha}"
TARBALL="$CACHE/debian-$SUITE-minbase.tar"
DOCKER="${DOCKER:-docker}"
log() { echo "base: $*" >&2; }

if [ "${FORCE:-0}" != 1 ] && "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "$BASE_IMAGE already exists (FORCE=1 to rebuild)"
    exit 0
fi
mkdir -p "$CACHE"
if [ "${FORCE:-0}" = 1 ] || [ ! -s "$TARBALL" ]; then
    [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
    command -v debootstrap >/dev/null || { log "debootstrap not installed (apt-get install debootstrap)"; exit 1; }
    rootfs="$(mktemp -d "$CACHE/rootfs.XXXXXX")"
    trap 'rm -rf "$rootfs"' EXIT
    log "debootstrap --variant=minbase $SUITE from $MIRROR (log: $CACHE/debootstrap-$SUITE.log)"
    debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$CACHE/debootstrap-$SUITE.log" 2>&1 \
        || { tail -20 "$CACHE/debootstrap-$SUITE.log" >&2; log "debootstrap failed"; exit 1; }
    # Image hygiene, as the official debian images do: no apt caches or lists, no recommends,
    # no docs/man pages in later installs, and a policy-rc.d so daemons never start during builds.
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    cat >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends" <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-excludes" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
DPKG
    printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"; chmod +x "$rootfs/usr/sbin/policy-rc.d"
    if [ "$SUITE" = unstable ]; then
        printf 'deb %s unstable main\n' "$MIRROR" >"$rootfs/etc/apt/sources.list"
        # The mirror serves unstable's Release file past its Valid-Until date: apt refuses it otherwise.
        echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/99check-valid-until"
    else
        printf 'deb %s %s main\ndeb %s %s-updates main\ndeb http://deb.debian.org/debian-security %s-security main\n' \
            "$MIRROR" "$SUITE" "$MIRROR" "$SUITE" "$SUITE" >"$rootfs/etc/apt/sources.list"
    fi
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*.log \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    : >"$rootfs/etc/machine-id"
    tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
    log "rootfs cached at $TARBALL ($(du -h "$TARBALL" | cut -f1))"
fi
"$DOCKER" import \
    --change 'CMD ["bash"]' \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --message "debootstrap --variant=minbase $SUITE" \
    "$TARBALL" "$BASE_IMAGE" >/dev/null
log "imported $BASE_IMAGE ($("$DOCKER" image inspect -f '{{.Size}}' "$BASE_IMAGE" | awk '{printf "%.0f MB", $1/1e6}'))"
