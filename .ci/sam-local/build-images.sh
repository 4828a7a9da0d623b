#!/usr/bin/env bash
# Build, without any container registry, the images `sam local` and the local stack need in CI:
#
#   imagegen-sam-local/debian:<suite>               debootstrap'd Debian root, imported (tarball cached)
#   imagegen-sam-local/python:3.13                  + this host's CPython 3.13 copied to /var/lang
#   public.ecr.aws/lambda/python:3.13-<arch>        stand-in for the official Lambda base image
#   public.ecr.aws/lambda/python:3.13               (same image; the tag sam local asks for is the first)
#   imagegen-sam-local/moto:<version>, :latest      moto_server -H 0.0.0.0 -p 5000
#   imagegen-sam-local/devstack:latest              pillow+httpx+pydantic, the repo copied to /app
#
# Every image carries LABEL description="offline stand-in ..., CI only". Each image is rebuilt only
# when its inputs changed (label org.imagegen.sam-local.inputs); FORCE=1 rebuilds everything.
# Needs a running engine: bash .ci/sam-local/engine.sh start
#
# Environment (all optional):
#   SAM_LOCAL_CACHE_DIR     debootstrap tarballs and wheels (default ~/.cache/imagegen-sam-local)
#   SAM_LOCAL_PYTHON        the python3.13 whose installation is copied (default: the base interpreter
#                           of .venv, else python3.13 on PATH)
#   SAM_LOCAL_SUITE         Debian suite for the root (default bookworm; must be at least as new as the
#                           glibc the copied Python was built against)
#   SAM_LOCAL_MIRROR        Debian mirror (default: the first URIs of /etc/apt/sources.list.d/debian.sources)
#   SAM_LOCAL_IMAGES        which images to build, space-separated, from: lambda moto devstack (default all)
#   AWSLAMBDARIC_VERSION    runtime interface client for the Lambda image (default 4.2.2)
#   DEVSTACK_PACKAGES       what the devstack image pip-installs (default "pillow httpx pydantic")
#   FORCE=1                 rebuild every image (the cached debootstrap tarball is reused; delete it to redo it)
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

SUITE="${SAM_LOCAL_SUITE:-bookworm}"
ARCH="$(lambda_arch)"
IMAGES="${SAM_LOCAL_IMAGES:-lambda moto devstack}"
AWSLAMBDARIC_VERSION="${AWSLAMBDARIC_VERSION:-4.2.2}"
DEVSTACK_PACKAGES="${DEVSTACK_PACKAGES:-pillow httpx pydantic}"
FORCE="${FORCE:-0}"
LABEL_DESC="offline stand-in for public.ecr.aws/lambda/python, CI only"
INPUT_LABEL="org.imagegen.sam-local.inputs"
IMAGE_DIR="$SAM_LOCAL_DIR/image"

export DOCKER_BUILDKIT=0 # the legacy builder: no buildx needed, and it is what sam local's own builds use

START_ALL=$(date +%s)
WORK="$(mktemp -d "${TMPDIR:-/tmp}/imagegen-sam-local-build.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

engine_answers || die "no Docker engine answers: run bash .ci/sam-local/engine.sh start first"
mkdir -p "$CACHE_DIR/rootfs" "$CACHE_DIR/wheels"

sha() { sha256sum | cut -c1-16; }
elapsed() { echo "$(($(date +%s) - $1))s"; }
image_inputs() { docker image inspect --format "{{ index .Config.Labels \"$INPUT_LABEL\" }}" "$1" 2>/dev/null || true; }
image_id() { docker image inspect --format '{{.Id}}' "$1"; }
# docker build, its chatter kept in a log that is shown only when the build fails.
docker_build() { # docker_build TAG CONTEXT [docker build options...]
    local tag="$1" ctx="$2" old
    shift 2
    old="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
    if ! docker build --label description="$LABEL_DESC" -t "$tag" "$@" "$ctx" >"$WORK/docker-build.log" 2>&1; then
        tail -n 40 "$WORK/docker-build.log" >&2
        die "docker build of $tag failed"
    fi
    # The legacy builder keeps the image of a multi-stage build's first stage: drop ours (labelled).
    docker image prune -f --filter label=org.imagegen.sam-local.stage=install >/dev/null
    drop_if_untagged "$old"
}
# The image a rebuild replaced, once nothing names it any more (by ID; kept if something still uses it).
drop_if_untagged() {
    [ -n "$1" ] || return 0
    if [ "$(docker image inspect --format '{{len .RepoTags}}' "$1" 2>/dev/null || echo x)" = 0 ]; then
        docker rmi "$1" >/dev/null 2>&1 && log "removed the replaced image ${1#sha256:}" || true
    fi
}
up_to_date() { [ "$FORCE" != 1 ] && [ "$(image_inputs "$1")" = "$2" ]; }

# ---------------------------------------------------------------------------------------------------
# The Python to copy: the interpreter the project's venv runs on (so `sam build` output matches it).
# ---------------------------------------------------------------------------------------------------
find_python() {
    local candidate
    for candidate in "${SAM_LOCAL_PYTHON:-}" "$REPO_ROOT/.venv/bin/python" "$(command -v python3.13 || true)"; do
        [ -n "$candidate" ] && [ -x "$candidate" ] || continue
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    die "no Python 3.13 found (set SAM_LOCAL_PYTHON=/path/to/python3.13)"
}
HOST_PY="$(find_python)"
PY_PREFIX="$("$HOST_PY" -c 'import sys; print(sys.base_prefix)')"
PY_VERSION="$("$HOST_PY" -c 'import platform; print(platform.python_version())')"
PY_BIN="$PY_PREFIX/bin/python3.13"
[ -x "$PY_BIN" ] || die "expected the interpreter at $PY_BIN (prefix of $HOST_PY)"
log "Python $PY_VERSION from $PY_PREFIX (via $HOST_PY) will be copied to /var/lang"

# Shared libraries the interpreter and its extension modules need, as Debian packages to put in the root.
python_lib_packages() {
    local files lib pkg
    files="$(find "$PY_PREFIX/lib/python3.13/lib-dynload" -name '*.so' ! -name '_tkinter*')"
    { ldd "$PY_BIN"; for f in $files; do ldd "$f"; done; } 2>/dev/null |
        awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u |
        while read -r lib; do
            case "$lib" in "$PY_PREFIX"/*) continue ;; esac
            pkg="$(dpkg -S "$lib" 2>/dev/null || dpkg -S "$(readlink -f "$lib")" 2>/dev/null ||
                dpkg -S "/usr$lib" 2>/dev/null || true)"
            pkg="${pkg%%:*}"
            if [ -n "$pkg" ]; then echo "$pkg"; else log "warning: no Debian package owns $lib"; fi
        done | sort -u
}

# ---------------------------------------------------------------------------------------------------
# 1. Debian root: debootstrap once, keep the tarball, import it.
# ---------------------------------------------------------------------------------------------------
debian_mirror() {
    if [ -n "${SAM_LOCAL_MIRROR:-}" ]; then echo "$SAM_LOCAL_MIRROR"; return; fi
    local uri
    uri="$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)"
    [ -z "$uri" ] && uri="$(awk '/^deb / && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)"
    echo "${uri:-http://deb.debian.org/debian}"
}

build_debian() {
    local step_start mirror include key tarball tag
    step_start=$(date +%s)
    mirror="$(debian_mirror)"
    include="ca-certificates,netbase,tzdata,$(python_lib_packages | paste -sd, -)"
    key="$(printf '%s\n' v1 "$SUITE" "$ARCH" "$include" | sha)"
    tarball="$CACHE_DIR/rootfs/debian-$SUITE-$ARCH-$key.tar.gz"
    tag="imagegen-sam-local/debian:$SUITE"
    if [ -f "$tarball" ]; then
        log "[debian] cached root $tarball"
    else
        if ! command -v debootstrap >/dev/null 2>&1; then
            log "[debian] installing debootstrap (apt-get)"
            DEBIAN_FRONTEND=noninteractive apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
        fi
        local root="$WORK/rootfs"
        log "[debian] debootstrap --variant=minbase $SUITE from $mirror, with: $include"
        debootstrap --variant=minbase --include="$include" "$SUITE" "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1 || {
            tail -n 30 "$WORK/debootstrap.log" >&2
            die "debootstrap failed"
        }
        log "[debian] trimming caches, docs and host files out of the root"
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* \
            "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
        : >"$root/etc/resolv.conf"
        echo lambda >"$root/etc/hostname"
        tar --numeric-owner -C "$root" -czf "$tarball.part" .
        mv "$tarball.part" "$tarball"
        rm -rf "$root"
        log "[debian] cached $tarball ($(du -h "$tarball" | cut -f1)) in $(elapsed "$step_start")"
    fi
    local inputs
    inputs="$(basename "$tarball")"
    if up_to_date "$tag" "$inputs"; then
        log "[debian] $tag up to date"
    else
        log "[debian] docker import -> $tag"
        local old
        old="$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)"
        docker import \
            --change "LABEL description=\"$LABEL_DESC\" $INPUT_LABEL=\"$inputs\"" \
            --change 'CMD ["/bin/bash"]' \
            "$tarball" "$tag" >/dev/null
        drop_if_untagged "$old"
    fi
    DEBIAN_IMAGE="$tag"
    log "[debian] done in $(elapsed "$step_start")"
}

# ---------------------------------------------------------------------------------------------------
# 2. imagegen-sam-local/python:3.13: the host's CPython installation at /var/lang.
# ---------------------------------------------------------------------------------------------------
build_python() {
    local step_start tag inputs ctx
    step_start=$(date +%s)
    tag="imagegen-sam-local/python:3.13"
    inputs="$(
        {
            image_id "$DEBIAN_IMAGE"
            echo "$PY_PREFIX $PY_VERSION"
            stat -c '%s %Y' "$PY_BIN" "$PY_PREFIX"/lib/libpython3.13.so* 2>/dev/null || true
            cat "$IMAGE_DIR/Dockerfile.python"
        } | sha
    )"
    if up_to_date "$tag" "$inputs"; then
        log "[python] $tag up to date"
        PYTHON_IMAGE="$tag"
        return
    fi
    ctx="$WORK/python"
    mkdir -p "$ctx/lang"
    log "[python] copying $PY_PREFIX (without tests, idle, tkinter, the static lib, site-packages other than pip)"
    tar -C "$PY_PREFIX" \
        --exclude='lib/python3.13/test' --exclude='lib/python3.13/idlelib' --exclude='lib/python3.13/tkinter' \
        --exclude='lib/python3.13/turtledemo' --exclude='lib/python3.13/lib-dynload/_tkinter*' \
        --exclude='lib/python3.13/config-3.13-*/*.a' --exclude='lib/python3.13/site-packages' \
        --exclude='bin/idle*' --exclude='share' \
        -cf - . | tar -C "$ctx/lang" -xf -
    mkdir -p "$ctx/lang/lib/python3.13/site-packages"
    (cd "$PY_PREFIX/lib/python3.13/site-packages" && tar -cf - README.txt pip pip-*.dist-info) |
        tar -C "$ctx/lang/lib/python3.13/site-packages" -xf -
    # Scripts carry the host prefix in their #! line: point them at /var/lang.
    local script
    for script in "$ctx"/lang/bin/*; do
        [ -f "$script" ] && [ ! -L "$script" ] || continue
        if head -c 2 "$script" | grep -q '#!'; then
            sed -i "1s|^#!.*python.*$|#!/var/lang/bin/python3.13|" "$script"
        fi
    done
    cp "$IMAGE_DIR/Dockerfile.python" "$ctx/Dockerfile"
    log "[python] docker build -> $tag ($(du -sh "$ctx/lang" | cut -f1) of Python)"
    docker_build "$tag" "$ctx" --build-arg DEBIAN_IMAGE="$DEBIAN_IMAGE" --label "$INPUT_LABEL=$inputs"
    rm -rf "$ctx"
    PYTHON_IMAGE="$tag"
    log "[python] done in $(elapsed "$step_start")"
}

# ---------------------------------------------------------------------------------------------------
# Wheels: resolved and fetched on the host (containers here have no route out), pinned by the lock.
# ---------------------------------------------------------------------------------------------------
constraints_file() {
    local out="$WORK/constraints.txt"
    if [ -f "$REPO_ROOT/requirements-dev.lock" ]; then
        sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*\)\(\[[^]]*\]\)\{0,1\}==\([^ ;\\]*\).*/\1==\3/p' \
            "$REPO_ROOT/requirements-dev.lock" >"$out"
    else
        : >"$out"
    fi
    echo "$out"
}

fetch_wheels() { # fetch_wheels DIR REQUIREMENT...
    local dir="$1"
    shift
    rm -rf "$dir"
    mkdir -p "$dir"
    log "[wheels] pip wheel $* (constrained by requirements-dev.lock) -> $dir"
    if ! "$HOST_PY" -m pip wheel --quiet --disable-pip-version-check --prefer-binary \
        -c "$(constraints_file)" --wheel-dir "$dir" "$@" >"$WORK/pip.log" 2>&1; then
        grep -v 'is ignored: it is neither a file nor a directory' "$WORK/pip.log" | tail -n 40 >&2
        die "pip wheel failed for $*"
    fi
    log "[wheels] $(find "$dir" -name '*.whl' | wc -l) wheels, $(du -sh "$dir" | cut -f1)"
}

# ---------------------------------------------------------------------------------------------------
# 3. The Lambda stand-in.
# ---------------------------------------------------------------------------------------------------
build_lambda() {
    local step_start tag inputs ctx
    step_start=$(date +%s)
    tag="public.ecr.aws/lambda/python:3.13-$ARCH"
    local old
    old="$(docker image inspect --format '{{.Id}}' public.ecr.aws/lambda/python:3.13 2>/dev/null || true)"
    local runtime_reqs="awslambdaric==$AWSLAMBDARIC_VERSION"
    local bundled_reqs="boto3"
    # The official image ships the runtime interface emulator at /usr/local/bin/aws-lambda-rie (used by
    # `docker run IMAGE handler`); sam local adds its own at /var/rapid. Take the one SAM CLI ships.
    local rie
    rie="$("$HOST_PY" -c 'import os, samcli; print(os.path.dirname(samcli.__file__))' 2>/dev/null || true)"
    rie="${rie:+$rie/local/rapid/aws-lambda-rie-$ARCH}"
    if [ -z "$rie" ] || [ ! -f "$rie" ]; then
        log "[lambda] SAM CLI's aws-lambda-rie not found next to $HOST_PY: the image gets none at /usr/local/bin"
        rie=""
    fi
    inputs="$(
        {
            image_id "$PYTHON_IMAGE"
            echo "$runtime_reqs | $bundled_reqs"
            constraints_file | xargs cat
            cat "$IMAGE_DIR/Dockerfile.lambda" "$IMAGE_DIR/lambda-entrypoint.sh" "$IMAGE_DIR/bootstrap" \
                "$IMAGE_DIR/bootstrap.py"
            if [ -n "$rie" ]; then sha256sum <"$rie"; fi
        } | sha
    )"
    if up_to_date "$tag" "$inputs"; then
        log "[lambda] $tag up to date"
    else
        ctx="$WORK/lambda"
        mkdir -p "$ctx"
        fetch_wheels "$CACHE_DIR/wheels/lambda" "$runtime_reqs" $bundled_reqs
        cp -r "$CACHE_DIR/wheels/lambda" "$ctx/wheels"
        cp "$IMAGE_DIR/Dockerfile.lambda" "$ctx/Dockerfile"
        cp "$IMAGE_DIR/lambda-entrypoint.sh" "$IMAGE_DIR/bootstrap" "$IMAGE_DIR/bootstrap.py" "$ctx/"
        mkdir -p "$ctx/rie"
        if [ -n "$rie" ]; then cp "$rie" "$ctx/rie/aws-lambda-rie"; fi
        # sam local builds its own images FROM this one and, with --skip-pull-image, never rebuilds a
        # layer-less one: drop those built on the previous stand-in so that the next run rebuilds them.
        local stale
        stale="$(docker images --format '{{.Repository}}:{{.Tag}}' |
            grep -E '^(public\.ecr\.aws/lambda/python:3\.13-rapid-|samcli/lambda-python:3\.13-)' || true)"
        if [ -n "$stale" ]; then
            log "[lambda] removing sam local's images built on the previous stand-in: ${stale//$'\n'/ }"
            # shellcheck disable=SC2086
            docker rmi $stale >/dev/null || log "[lambda] warning: could not remove all of them (in use?)"
        fi
        log "[lambda] docker build -> $tag"
        docker_build "$tag" "$ctx" --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" \
            --build-arg RUNTIME_REQUIREMENTS="$runtime_reqs" --build-arg BUNDLED_REQUIREMENTS="$bundled_reqs" \
            --label "$INPUT_LABEL=$inputs" --label org.imagegen.sam-local.python="$PY_VERSION"
        rm -rf "$ctx"
    fi
    docker tag "$tag" public.ecr.aws/lambda/python:3.13
    drop_if_untagged "$old"
    log "[lambda] $tag (also public.ecr.aws/lambda/python:3.13) done in $(elapsed "$step_start")"
}

# ---------------------------------------------------------------------------------------------------
# 4. Service images: moto server, devstack emulator.
# ---------------------------------------------------------------------------------------------------
build_service() { # build_service NAME TAG "REQUIREMENTS" APP_DIR_OR_EMPTY DOCKERFILE_TAIL
    local name="$1" tag="$2" reqs="$3" app="$4" tail_lines="$5"
    local step_start inputs ctx
    step_start=$(date +%s)
    inputs="$(
        {
            image_id "$PYTHON_IMAGE"
            echo "$reqs"
            constraints_file | xargs cat
            cat "$IMAGE_DIR/Dockerfile.service"
            echo "$tail_lines"
            if [ -n "$app" ]; then
                tar -C "$app" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
                    --exclude=__pycache__ --exclude='*.pyc' -cf - . | sha256sum
            fi
        } | sha
    )"
    if up_to_date "$tag" "$inputs"; then
        log "[$name] $tag up to date"
        return
    fi
    ctx="$WORK/$name"
    mkdir -p "$ctx/app"
    # shellcheck disable=SC2086
    fetch_wheels "$CACHE_DIR/wheels/$name" $reqs
    cp -r "$CACHE_DIR/wheels/$name" "$ctx/wheels"
    if [ -n "$app" ]; then
        tar -C "$app" --exclude=__pycache__ --exclude='*.pyc' -cf - . | tar -C "$ctx/app" -xf -
    fi
    { cat "$IMAGE_DIR/Dockerfile.service"; echo "$tail_lines"; } >"$ctx/Dockerfile"
    log "[$name] docker build -> $tag"
    docker_build "$tag" "$ctx" --build-arg PYTHON_IMAGE="$PYTHON_IMAGE" --build-arg REQUIREMENTS="$reqs" \
        --label "$INPUT_LABEL=$inputs"
    rm -rf "$ctx"
    log "[$name] done in $(elapsed "$step_start")"
}

build_moto() {
    local version old
    old="$(docker image inspect --format '{{.Id}}' imagegen-sam-local/moto:latest 2>/dev/null || true)"
    version="$(sed -n 's/^moto==\([^ ]*\).*/\1/p' "$REPO_ROOT/requirements-dev.lock" 2>/dev/null || true)"
    build_service moto "imagegen-sam-local/moto:${version:-latest}" "moto[server]" "" \
        'EXPOSE 5000
ENTRYPOINT ["/var/lang/bin/moto_server"]
CMD ["-H", "0.0.0.0", "-p", "5000"]'
    if [ -n "$version" ]; then docker tag "imagegen-sam-local/moto:$version" imagegen-sam-local/moto:latest; fi
    drop_if_untagged "$old"
    log "[moto] tags: imagegen-sam-local/moto:${version:-latest} imagegen-sam-local/moto:latest"
}

build_devstack() {
    # The repo's Python sources, copied at build time; mount the work tree at /app to run newer code.
    local app="$WORK/devstack-app" item
    mkdir -p "$app"
    for item in devstack layers client functions pyproject.toml; do
        if [ -e "$REPO_ROOT/$item" ]; then cp -r "$REPO_ROOT/$item" "$app/"; fi
    done
    build_service devstack imagegen-sam-local/devstack:latest "$DEVSTACK_PACKAGES" "$app" \
        'ENV PYTHONPATH=/app:/app/layers/shared:/app/client
EXPOSE 8080
CMD ["python3", "-m", "devstack.emulator", "--port", "8080", "--host", "0.0.0.0"]'
}

log "building for $ARCH, Debian $SUITE; cache $CACHE_DIR; images: $IMAGES"
build_debian
build_python
for image in $IMAGES; do
    case "$image" in
        lambda) build_lambda ;;
        moto) build_moto ;;
        devstack) build_devstack ;;
        *) die "unknown image '$image' (choose from: lambda moto devstack)" ;;
    esac
done
log "all done in $(elapsed "$START_ALL"):"
docker images --format '{{.Repository}}:{{.Tag}}  {{.ID}}  {{.Size}}' |
    grep -E '^(public\.ecr\.aws/lambda/python|imagegen-sam-local/)' | sed 's/^/  /' >&2 || true
