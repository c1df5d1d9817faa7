#!/usr/bin/env bash
# Make a local Python base image for Docker tests (idempotent).
#
# No image registry is reachable here, so nothing can be pulled (DESIGN.md §5). This builds a
# minimal Debian bookworm root file system with python3 (+ venv, pip) by debootstrap from the
# machine's own Debian mirror and imports it as an image. The mirror is read from the machine's
# apt sources at run time and is never written into the repository.
#
# Usage: bash .ci/base-image.sh [NAME]      (default NAME: nbflows-python:bookworm)
# Needs a running engine: bash .ci/docker-engine.sh
set -euo pipefail

NAME="${1:-nbflows-python:bookworm}"
SUITE=bookworm
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { echo "base-image: $*" >&2; }

# One build at a time (parallel test workers may all ask for the image): the others wait here
# and then find the image made.
exec 9>"/tmp/nbflows-base-image.${NAME//[^A-Za-z0-9_.-]/_}.lock"
flock 9

if docker image inspect "$NAME" >/dev/null 2>&1; then
    log "$NAME exists; nothing to do"
    exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends debootstrap debian-archive-keyring ca-certificates
fi

# The Debian mirror this machine's apt uses: first the deb822 files (a stanza of Types deb whose
# Suites name the plain suite), then one-line sources.list entries.
mirror_from_apt() {
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            function flush() {
                if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") && uris != "") {
                    split(uris, u, " "); print u[1]; found = 1; exit
                }
                types = ""; suites = ""; uris = ""
            }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            tolower($1) == "types:"  { $1 = ""; types = $0 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            tolower($1) == "uris:"   { $1 = ""; uris = $0; sub(/^ +/, "", uris) }
            END { if (!found) flush() }
        ' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        # deb [options] URI SUITE COMPONENTS...
        sed -e 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2 }'
    done
}
MIRROR="$(mirror_from_apt | head -n 1)"
if [ -z "$MIRROR" ]; then
    log "ERROR: found no Debian '$SUITE' mirror in /etc/apt/sources.list{,.d/*} to debootstrap from"
    exit 1
fi

WORK="$(mktemp -d /tmp/nbflows-base-image.XXXXXX)"
ROOT="$WORK/root"
trap 'rm -rf "$WORK"' EXIT

log "debootstrap $SUITE from the machine's mirror into $ROOT (about 45 s)"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
    "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
    tail -n 30 "$WORK/debootstrap.log" >&2
    log "ERROR: debootstrap failed"
    exit 1
}

# With the machine's CA bundle, pip inside `docker build` reaches the package index the same way
# pip on this machine does.
if [ -f "$CA_BUNDLE" ]; then
    mkdir -p "$ROOT$(dirname "$CA_BUNDLE")"
    cp "$CA_BUNDLE" "$ROOT$CA_BUNDLE"
fi

# The machine's pip settings that matter for reaching the index (index URLs, trusted hosts, CA
# file, proxy, timeouts) go into the image's /etc/pip.conf. Constraints, find-links and file://
# indexes name files on this machine that the image does not have, so they are left out.
export ROOT
PIP_CONF_OUT="$ROOT/etc/pip.conf" python3 - <<'PY'
import configparser
import os
import shutil
import subprocess

root = os.environ["ROOT"]
keep = {
    "index-url", "extra-index-url", "trusted-host", "cert", "client-cert", "proxy",
    "timeout", "default-timeout", "retries",
}
try:
    listing = subprocess.run(
        ["python3", "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
except (OSError, subprocess.CalledProcessError):
    listing = ""
settings: dict[str, str] = {}
for line in listing.splitlines():
    # global.cert='/etc/ssl/...'  or  :env:.cert='...'  (later sources override earlier ones)
    name, _, value = line.partition("=")
    key = name.rsplit(".", 1)[-1].strip()
    value = value.strip().strip("'\"")
    if key == "timeout":
        key = "default-timeout"
    if key not in keep or not value:
        continue
    if key in ("index-url", "extra-index-url"):
        urls = [u for u in value.split() if u.startswith(("http://", "https://"))]
        if not urls:
            continue
        value = " ".join(urls)
    if key in ("cert", "client-cert"):
        if not os.path.isfile(value):
            continue
        target = root + value
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            shutil.copyfile(value, target)
    settings[key] = value
if settings:
    conf = configparser.ConfigParser()
    conf["global"] = settings
    with open(os.environ["PIP_CONF_OUT"], "w") as fh:
        conf.write(fh)
    print("base-image: pip settings for the image:", ", ".join(sorted(settings)))
PY

# Smaller image: apt lists and caches are not needed at run time.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*

log "importing as $NAME"
tar -C "$ROOT" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$NAME" >/dev/null
log "done: $(docker image inspect --format '{{.Id}} {{.Size}}' "$NAME")"
