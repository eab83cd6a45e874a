#!/usr/bin/env bash
# `make docker-test`: build the CPU image, start it, and check /health and the specification's
# /patch from outside the container; validate both compose files. Runs as root on a fresh
# Debian machine as well as on one where Docker is already set up:
#
# - Docker's engine is Debian's `docker.io`: installed if absent, and `dockerd` started if it
#   is not running (its log: /var/log/actpatch-dockerd.log).
# - The base image is python:3.11-slim when it can be pulled; otherwise one is built from
#   Debian's packages (debootstrap, then `docker import`) once, kept as actpatch-base:<suite>,
#   and handed to the Dockerfile as BASE_IMAGE.
# - The build uses the host's network and the CA bundle pip is configured with (a build
#   secret: nothing of it is stored in the image); when pip here finds torch through a local
#   folder (find-links), that folder is served on 127.0.0.1 for the build, so the image gets
#   the same CPU wheel.
#
# Several runs may share a machine (two sessions, or a run started while an earlier one still
# builds): each names its container uniquely and works on it by the id `docker run` gave it,
# runs the image its own build produced (by id), and holds a lock from the build to the start
# of its container, so that no run removes another's container or image. (A fixed container
# name made a second run's `docker rm -f` remove the first one's container right after its
# `docker run -d`: "Error: No such object: actpatch-docker-test".)
#
# Environment: DOCKER (client, default Debian's /usr/bin/docker), IMAGE (default
# actpatch:test), PORT (host port, default a free one), KEEP=1 to leave the container running.
set -euo pipefail

cd "$(dirname "$0")/.."
IMAGE=${IMAGE:-actpatch:test}
CONTAINER=actpatch-docker-test-$(date +%s)-$$
LOCKS=${LOCKS:-/var/lock}
container_id=""
started=$(date +%s)
say() { printf 'docker-test: %s\n' "$*" >&2; }
elapsed() { echo "$(( $(date +%s) - started )) s"; }

# -- Docker's engine ------------------------------------------------------------------------
if [ ! -x /usr/sbin/dockerd ]; then
    say "installing Debian's docker.io ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null 2>&1
fi
# Debian's client talks to Debian's engine with its built-in BuildKit (build secrets); a newer
# client elsewhere on PATH would want the buildx plugin instead.
DOCKER=${DOCKER:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker )}
export DOCKER_BUILDKIT=1
if ! "$DOCKER" info >/dev/null 2>&1; then
    # One engine for every run: the first to get here starts it; the others wait for it. An
    # engine already starting (another run's, or the one the docker.io package's init script
    # starts on a machine without systemd) is waited for, never doubled.
    exec 8>"$LOCKS/actpatch-dockerd.lock"
    flock 8
    for _ in $(seq 30); do
        "$DOCKER" info >/dev/null 2>&1 && break
        pgrep -x dockerd >/dev/null || break
        sleep 1
    done
    if ! "$DOCKER" info >/dev/null 2>&1; then
        if ! pgrep -x dockerd >/dev/null; then
            say "starting dockerd ..."
            # (without the lock's descriptor: the engine outlives this run and must not hold it)
            nohup /usr/sbin/dockerd >/var/log/actpatch-dockerd.log 2>&1 8>&- &
        fi
        for _ in $(seq 60); do "$DOCKER" info >/dev/null 2>&1 && break; sleep 1; done
        "$DOCKER" info >/dev/null 2>&1 || { say "dockerd did not start:"; tail /var/log/actpatch-dockerd.log; exit 1; }
    fi
    exec 8>&-
fi

# -- the base image -------------------------------------------------------------------------
BASE_IMAGE=${BASE_IMAGE:-python:3.11-slim}
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1 \
    && ! timeout 120 "$DOCKER" pull -q "$BASE_IMAGE" >/dev/null 2>&1; then
    suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    BASE_IMAGE=actpatch-base:$suite
    if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
        say "python:3.11-slim cannot be pulled: building $BASE_IMAGE from Debian's packages ..."
        command -v debootstrap >/dev/null || {
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1
        }
        rootfs=$(mktemp -d /var/tmp/actpatch-rootfs.XXXXXX)
        mirror=$( (cat /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true) \
            | grep -E '^(URIs:|deb) ' | grep -oE 'https?://[^ ]+/debian/?$' | head -1 || true)
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            "$suite" "$rootfs" "${mirror:-http://deb.debian.org/debian}" \
            >/var/log/actpatch-debootstrap.log 2>&1 \
            || { tail -20 /var/log/actpatch-debootstrap.log; exit 1; }
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
        tar -C "$rootfs" -c . | "$DOCKER" import \
            --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' - "$BASE_IMAGE" >/dev/null
        rm -rf "$rootfs"
        say "built $BASE_IMAGE ($(elapsed))"
    fi
fi
say "base image: $BASE_IMAGE"

# -- what pip here is configured with -------------------------------------------------------
pip_config() { python3 -m pip config get "$1" 2>/dev/null || true; }
ca_bundle=${PIP_CERT:-$(pip_config global.cert)}
ca_bundle=${ca_bundle:-${REQUESTS_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}}
build_args=(--build-arg "BASE_IMAGE=$BASE_IMAGE")
[ -f "$ca_bundle" ] && build_args+=(--secret "id=ca_bundle,src=$ca_bundle")
torch_pin=$(grep -oE '"torch==[^"]+"' pyproject.toml | tr -d '"' | cut -d= -f3)
wheels=""
for folder in ${PIP_FIND_LINKS:-$(pip_config global.find-links)}; do
    wheel=$(ls "$folder"/torch-"$torch_pin"*-cp311-*.whl 2>/dev/null | head -1 || true)
    if [ -n "$wheel" ]; then wheels=$folder; break; fi
done
server_pid=""
work=$(mktemp -d /tmp/actpatch-docker-test.XXXXXX)
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
    # this run's own container only (by its id): never another run's
    if [ -n "$container_id" ] && [ "${KEEP:-0}" != 1 ]; then
        "$DOCKER" rm -f -v "$container_id" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
if [ -n "$wheels" ]; then
    # A fixed port when it is free: the URL is a build argument, so a new one each run would
    # rebuild every layer after it.
    wheel_port=$(python3 -c 'import socket
s = socket.socket()
try:
    s.bind(("127.0.0.1", 39471))
except OSError:
    s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])')
    python3 -m http.server --bind 127.0.0.1 --directory "$wheels" "$wheel_port" >/dev/null 2>&1 &
    server_pid=$!
    version=$(basename "$wheel" | cut -d- -f2)  # e.g. 2.13.0+cpu
    build_args+=(--build-arg "WHEELS=http://127.0.0.1:$wheel_port/"
                 --build-arg "TORCH=torch==$version"
                 --build-arg "TORCH_INDEX_URL=https://pypi.org/simple")
    say "torch $version from $wheels"
fi

# -- build, run, check ------------------------------------------------------------------------
# From the build to the start of the container, under a lock: another run's build must not
# retag the image and remove this one's before its container holds it.
exec 9>"$LOCKS/actpatch-docker-test.lock"
flock 9
build_started=$(date +%s)
previous=$("$DOCKER" image inspect -f '{{.Id}}' "$IMAGE" 2>/dev/null || true)
build_log=/var/log/actpatch-docker-build.log
say "building $IMAGE ..."
"$DOCKER" build --network host --progress plain "${build_args[@]}" --iidfile "$work/image-id" \
    -t "$IMAGE" . >"$build_log" 2>&1 \
    || { tail -40 "$build_log"; exit 1; }
image_id=$(cat "$work/image-id")
size=$("$DOCKER" image inspect -f '{{.Size}}' "$image_id")
if [ -n "$previous" ] && [ "$previous" != "$image_id" ]; then
    "$DOCKER" rmi "$previous" >/dev/null 2>&1 || true  # the last run's image, now untagged
fi
say "built $IMAGE in $(( $(date +%s) - build_started )) s: $(( size / 1000000 )) MB"

PORT=${PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
# The port is published on the host's loopback only, so the server may run without a token.
container_id=$("$DOCKER" run -d --name "$CONTAINER" -p "127.0.0.1:$PORT:8000" \
    -e ACTPATCH_ALLOW_OPEN=true "$image_id")
exec 9>&-
say "started $CONTAINER (${container_id:0:12}) on 127.0.0.1:$PORT"
state() {  # a field of this run's container; says so plainly if the container is gone
    "$DOCKER" inspect -f "{{$1}}" "$container_id" 2>/dev/null && return
    say "FAIL: container ${container_id:0:12} ($CONTAINER) is gone: something removed it while this run used it. Containers now:"
    "$DOCKER" ps -a >&2
    exit 1
}
for _ in $(seq 300); do
    running=$(state .State.Running)
    [ "$running" = true ] || { say "FAIL: the container stopped:"; "$DOCKER" logs --tail 40 "$container_id"; exit 1; }
    python3 -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$PORT/health', timeout=5)" \
        2>/dev/null && break
    sleep 2
done
say "the server answers ($(elapsed) in all)"
python3 docker/check.py "http://127.0.0.1:$PORT" \
    || { "$DOCKER" logs --tail 40 "$container_id"; exit 1; }

user=$("$DOCKER" exec "$container_id" id -un)
[ "$user" != root ] || { say "FAIL: the server runs as root"; exit 1; }
echo "ok   the server runs as $user, not root"
for _ in $(seq 60); do
    health=$(state .State.Health.Status)
    [ "$health" = starting ] || break
    sleep 2
done
[ "$health" = healthy ] || { say "FAIL: the container's health check says $health"; exit 1; }
echo "ok   the container's HEALTHCHECK says healthy"

# -- the compose files ------------------------------------------------------------------------
if ! command -v docker-compose >/dev/null && ! "$DOCKER" compose version >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null 2>&1
fi
compose() { if "$DOCKER" compose version >/dev/null 2>&1; then "$DOCKER" compose "$@"; else docker-compose "$@"; fi; }
for file in docker-compose.yml docker-compose.gpu.yml; do
    compose -f "$file" config >/dev/null
    echo "ok   $file is valid"
done
gpu=$(compose -f docker-compose.gpu.yml config)  # (not piped into grep -q: no SIGPIPE)
grep -q "capabilities:" <<<"$gpu" && grep -q "driver: nvidia" <<<"$gpu" \
    || { say "FAIL: the GPU compose reserves no GPU"; exit 1; }
echo "ok   docker-compose.gpu.yml reserves the NVIDIA GPUs"

say "passed in $(elapsed) (image $(( size / 1000000 )) MB)"
