# Shared helpers for the sam-local scripts. Sourced, never run.
# shellcheck shell=bash

SAM_LOCAL_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SAM_LOCAL_DIR/../.." && pwd)"

# Where engine.sh keeps the pid file, the log and dockerd's exec-root (all throwaway).
ENGINE_STATE_DIR="${SAM_LOCAL_ENGINE_DIR:-${TMPDIR:-/tmp}/imagegen-sam-local-engine}"
# Where build-images.sh keeps the debootstrap tarball and the wheels (kept between runs).
CACHE_DIR="${SAM_LOCAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/imagegen-sam-local}"

log() { printf '[sam-local %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The Docker socket everything talks to: DOCKER_HOST if it is a unix socket, else the default one.
docker_socket() {
    case "${DOCKER_HOST:-}" in
        unix://*) printf '%s\n' "${DOCKER_HOST#unix://}" ;;
        "") printf '%s\n' /var/run/docker.sock ;;
        *) die "DOCKER_HOST=$DOCKER_HOST is not a unix socket; these scripts drive a local dockerd only" ;;
    esac
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

# Lambda's architecture name for this host (what SAM puts in image tags).
lambda_arch() {
    case "$(uname -m)" in
        x86_64 | amd64) echo x86_64 ;;
        aarch64 | arm64) echo arm64 ;;
        *) die "unsupported machine $(uname -m)" ;;
    esac
}
