#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine (idempotent).
#
# Development and CI machines start with no engine running (DESIGN.md §5): Debian's docker.io
# package brings one that runs. CI machines may start bare, so this installs it when needed.
# Usage: bash .ci/docker-engine.sh      (log of the started daemon: /tmp/dockerd.log)
set -euo pipefail

log() { echo "docker-engine: $*" >&2; }

if docker info >/dev/null 2>&1; then
    log "engine already answers; nothing to do"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    log "no engine answers and starting one needs root" >&2
    exit 1
fi

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    log "installing Debian's docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends docker.io iptables ca-certificates
fi

# A daemon may be starting already (another script, a previous call): wait for it first
# instead of racing it for the pid file and socket.
# (pid file rather than pgrep: procps is not on a bare Debian.)
if ! { [ -s /var/run/docker.pid ] && kill -0 "$(cat /var/run/docker.pid)" 2>/dev/null; }; then
    log "starting dockerd in the background (log: /tmp/dockerd.log)"
    nohup dockerd >/tmp/dockerd.log 2>&1 </dev/null &
fi

for _ in $(seq 1 60); do
    if docker info >/dev/null 2>&1; then
        log "engine is up ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
        exit 0
    fi
    sleep 1
done

log "ERROR: the Docker engine did not answer within 60 s; last lines of /tmp/dockerd.log:"
tail -n 40 /tmp/dockerd.log >&2 || true
exit 1
