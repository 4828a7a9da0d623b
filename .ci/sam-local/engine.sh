#!/usr/bin/env bash
# Start or stop a local Docker engine (Debian's docker.io dockerd) for `sam local` in CI.
#
#   bash .ci/sam-local/engine.sh start    # installs docker.io if dockerd is missing, starts it, waits for it
#   bash .ci/sam-local/engine.sh stop     # stops exactly the dockerd that `start` started (by PID)
#   bash .ci/sam-local/engine.sh status
#
# The daemon runs with --iptables=false --ip-masq=false --ip-forward=false: containers on the same
# network (the default bridge or a user-defined one) reach each other, the host reaches published
# ports through docker-proxy on 127.0.0.1, and nothing is routed off the machine.
#
# Environment (all optional):
#   SAM_LOCAL_ENGINE_DIR      pid file, log and exec-root  (default ${TMPDIR:-/tmp}/imagegen-sam-local-engine)
#   SAM_LOCAL_DATA_ROOT       dockerd --data-root, where images live (default /var/lib/docker, dockerd's own)
#   SAM_LOCAL_STORAGE_DRIVER  dockerd --storage-driver (default overlay2; vfs works everywhere but is slow and big)
#   SAM_LOCAL_START_TIMEOUT   seconds to wait for `docker info` (default 60)
#   DOCKER_HOST               unix:///path/to.sock to run the daemon on another socket
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

PID_FILE="$ENGINE_STATE_DIR/dockerd.pid"
LOG_FILE="$ENGINE_STATE_DIR/dockerd.log"
START_TIMEOUT="${SAM_LOCAL_START_TIMEOUT:-60}"
STOP_TIMEOUT=30

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

# The pid in our pid file, if that process is still a dockerd.
our_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = dockerd ] && echo "$pid"
}

ensure_dockerd() {
    if command -v dockerd >/dev/null 2>&1 && command -v docker >/dev/null 2>&1; then
        log "dockerd found at $(command -v dockerd) ($(dockerd --version)); client $(command -v docker)"
        return
    fi
    log "dockerd missing: installing Debian's docker.io (apt-get update; apt-get install -y docker.io)"
    # docker.io puts its client in /usr/bin/docker; a client already in /usr/local/bin stays first on PATH
    # and talks to this daemon fine (the API version is negotiated). No service is started by apt here.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >/dev/null
    command -v dockerd >/dev/null 2>&1 || die "docker.io installed but dockerd is still not on PATH"
    log "installed $(dockerd --version)"
}

start() {
    local pid sock
    if pid="$(our_pid)"; then
        log "dockerd already running (ours, pid $pid)"
        engine_answers && return 0
    elif engine_answers; then
        log "a Docker engine already answers on $(docker_socket) (not started by this script): using it as is"
        return 0
    fi
    [ "$(id -u)" -eq 0 ] || die "dockerd needs root (run this script as root)"
    ensure_dockerd
    mkdir -p "$ENGINE_STATE_DIR/exec"
    sock="$(docker_socket)"
    if [ -S "$sock" ] && ! engine_answers; then
        log "removing stale socket $sock (no daemon answers on it)"
        rm -f "$sock"
    fi
    local args=(
        --host "unix://$sock"
        --pidfile "$PID_FILE"
        --exec-root "$ENGINE_STATE_DIR/exec"
        --storage-driver "${SAM_LOCAL_STORAGE_DRIVER:-overlay2}"
        --iptables=false --ip-masq=false --ip-forward=false
    )
    [ -n "${SAM_LOCAL_DATA_ROOT:-}" ] && args+=(--data-root "$SAM_LOCAL_DATA_ROOT")
    log "starting: dockerd ${args[*]} (log: $LOG_FILE)"
    # setsid: the daemon gets its own session, so it outlives this shell and ^C in the caller's terminal.
    setsid dockerd "${args[@]}" >"$LOG_FILE" 2>&1 </dev/null &
    local launched=$!
    local waited=0
    until engine_answers; do
        if ! kill -0 "$launched" 2>/dev/null; then
            tail -n 30 "$LOG_FILE" >&2 || true
            die "dockerd exited during start-up (log above, full log in $LOG_FILE)"
        fi
        if [ "$waited" -ge "$START_TIMEOUT" ]; then
            tail -n 30 "$LOG_FILE" >&2 || true
            kill -TERM "$launched" 2>/dev/null || true
            die "dockerd did not answer within ${START_TIMEOUT}s"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    pid="$(our_pid)" || die "dockerd answers but its pid file $PID_FILE is missing"
    log "dockerd up after ~${waited}s: pid $pid, $(docker info --format '{{.ServerVersion}} storage={{.Driver}} cgroup={{.CgroupDriver}}')"
}

stop() {
    local pid children
    if ! pid="$(our_pid)"; then
        log "no dockerd started by this script is running (pid file: $PID_FILE); nothing to stop"
        return 0
    fi
    # dockerd runs its own containerd as a child: note it so that nothing is left behind.
    children="$(ps -o pid= --ppid "$pid" 2>/dev/null | tr -s ' \n' ' ' || true)"
    log "stopping dockerd pid $pid (children: ${children:-none}); it stops its running containers first"
    kill -TERM "$pid"
    local waited=0
    while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((STOP_TIMEOUT * 2)) ]; do
        sleep 0.5
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "dockerd pid $pid still alive after ${STOP_TIMEOUT}s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    for child in $children; do
        if kill -0 "$child" 2>/dev/null; then
            log "child pid $child still alive: SIGTERM"
            kill -TERM "$child" 2>/dev/null || true
            sleep 2
            kill -KILL "$child" 2>/dev/null || true
        fi
    done
    rm -f "$PID_FILE"
    log "dockerd stopped"
}

status() {
    local pid
    if pid="$(our_pid)"; then
        log "dockerd running (ours, pid $pid)"
    else
        log "no dockerd of ours (pid file: $PID_FILE)"
    fi
    if engine_answers; then
        log "engine answers on $(docker_socket): $(docker info --format '{{.ServerVersion}} storage={{.Driver}}')"
    else
        log "no engine answers on $(docker_socket)"
        return 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
