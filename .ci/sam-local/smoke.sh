#!/usr/bin/env bash
# Prove the stand-in images work with the SAM CLI, offline: in a throwaway project (a python3.13 function
# with a local layer, and one that talks to moto over a user-defined Docker network):
#   1. sam build
#   2. sam local invoke HelloFunction -e event.json --skip-pull-image            (cold, then warm)
#   3. sam local invoke S3Function --skip-pull-image --docker-network NET        (boto3 -> moto by name)
#   4. sam local start-api --skip-pull-image --docker-network NET, curl /hello and /buckets on 127.0.0.1
#   5. docker run IMAGE app.handler (the image's own /lambda-entrypoint.sh + RIE), one POST on 127.0.0.1
# Everything it starts (sam, containers, the network) is stopped by ID on exit. Needs the engine and the
# images: bash .ci/sam-local/engine.sh start && bash .ci/sam-local/build-images.sh
#
# Environment: SAM (default: sam on PATH, else .venv/bin/sam), SAM_LOCAL_KEEP=1 keeps the temp project.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ARCH="$(lambda_arch)"
if [ -n "${SAM:-}" ]; then :
elif command -v sam >/dev/null 2>&1; then SAM="$(command -v sam)"
elif [ -x "$REPO_ROOT/.venv/bin/sam" ]; then SAM="$REPO_ROOT/.venv/bin/sam"
else die "sam not found (make install, or set SAM=/path/to/sam)"; fi
# sam build runs python3.13 from PATH: the venv has it.
[ -d "$REPO_ROOT/.venv/bin" ] && export PATH="$REPO_ROOT/.venv/bin:$PATH"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-us-east-1}"

engine_answers || die "no Docker engine answers: bash .ci/sam-local/engine.sh start"
docker image inspect "public.ecr.aws/lambda/python:3.13-$ARCH" >/dev/null 2>&1 ||
    die "public.ecr.aws/lambda/python:3.13-$ARCH missing: bash .ci/sam-local/build-images.sh"
docker image inspect imagegen-sam-local/moto:latest >/dev/null 2>&1 ||
    die "imagegen-sam-local/moto:latest missing: bash .ci/sam-local/build-images.sh"

PROJECT="$(mktemp -d "${TMPDIR:-/tmp}/sam-local-smoke.XXXXXX")"
NET="sam-local-smoke-$$"
NET_ID="" MOTO_ID="" RIE_ID="" API_PID=""
cleanup() {
    local rc=$?
    if [ -n "$API_PID" ] && kill -0 "$API_PID" 2>/dev/null; then
        kill -TERM "$API_PID" 2>/dev/null || true
        for _ in $(seq 1 40); do kill -0 "$API_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL "$API_PID" 2>/dev/null || true
    fi
    for id in $RIE_ID $MOTO_ID; do docker rm -f "$id" >/dev/null 2>&1 || true; done
    # Lambda containers sam may have left on our network (it removes them itself on a clean stop).
    if [ -n "$NET_ID" ]; then
        for id in $(docker ps -aq --filter "network=$NET_ID" --filter label=sam.cli.container.type=lambda); do
            docker rm -f "$id" >/dev/null 2>&1 || true
        done
        docker network rm "$NET_ID" >/dev/null 2>&1 || true
    fi
    if [ "${SAM_LOCAL_KEEP:-0}" = 1 ]; then log "kept $PROJECT"; else rm -rf "$PROJECT"; fi
    [ "$rc" -eq 0 ] && log "smoke: all checks passed" || log "smoke: FAILED (rc=$rc)"
    exit "$rc"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
check_contains() { # check_contains WHAT TEXT NEEDLE
    if ! grep -q -- "$3" <<<"$2"; then
        log "$1: expected '$3' in: $2"
        return 1
    fi
    log "$1: ok"
}

log "project $PROJECT ($ARCH)"
mkdir -p "$PROJECT/hello" "$PROJECT/s3fn" "$PROJECT/layer/greeting"
cat >"$PROJECT/template.yaml" <<EOF
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function:
    Runtime: python3.13
    Architectures: [$ARCH]
    Timeout: 30
    MemorySize: 256
Resources:
  GreetingLayer:
    Type: AWS::Serverless::LayerVersion
    Properties:
      ContentUri: layer/
      CompatibleRuntimes: [python3.13]
    Metadata:
      BuildMethod: python3.13
  HelloFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: hello/
      Handler: app.handler
      Layers: [!Ref GreetingLayer]
      Events:
        Hello:
          Type: Api
          Properties: {Path: /hello, Method: get}
  S3Function:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: s3fn/
      Handler: app.handler
      Environment:
        Variables:
          AWS_ENDPOINT_URL: http://moto:5000
      Events:
        Buckets:
          Type: Api
          Properties: {Path: /buckets, Method: get}
EOF
cat >"$PROJECT/layer/greeting/__init__.py" <<'EOF'
def greet(name):
    return f"hello, {name}"
EOF
cat >"$PROJECT/hello/app.py" <<'EOF'
import json
import os
import platform

from greeting import greet  # from the layer, at /opt/python


def handler(event, context):
    name = (event.get("queryStringParameters") or {}).get("name", "world")
    body = {
        "message": greet(name),
        "python": platform.python_version(),
        "exec_env": os.environ.get("AWS_EXECUTION_ENV"),
        "request_id": context.aws_request_id,
    }
    return {"statusCode": 200, "headers": {"content-type": "application/json"}, "body": json.dumps(body)}
EOF
cat >"$PROJECT/s3fn/app.py" <<'EOF'
import json
import uuid

import boto3  # the one the runtime ships


def handler(event, context):
    s3 = boto3.client("s3")  # AWS_ENDPOINT_URL=http://moto:5000, the moto container on the sam network
    bucket = f"smoke-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k.txt", Body=b"stored via moto")
    body = s3.get_object(Bucket=bucket, Key="k.txt")["Body"].read().decode()
    return {"statusCode": 200, "body": json.dumps({"bucket": bucket, "read_back": body})}
EOF
touch "$PROJECT/hello/requirements.txt" "$PROJECT/s3fn/requirements.txt" "$PROJECT/layer/requirements.txt"
echo '{"queryStringParameters": {"name": "ci"}}' >"$PROJECT/event.json"
echo '{}' >"$PROJECT/empty.json"
cd "$PROJECT"

t=$(now_ms)
"$SAM" build >"$PROJECT/build.log" 2>&1 || { tail -n 30 "$PROJECT/build.log" >&2; die "sam build failed"; }
log "sam build: $(($(now_ms) - t)) ms"

for run in first second; do
    t=$(now_ms)
    out="$(timeout 180 "$SAM" local invoke HelloFunction -e event.json --skip-pull-image 2>"$PROJECT/invoke.err")" ||
        { tail -n 30 "$PROJECT/invoke.err" >&2; die "sam local invoke failed"; }
    log "sam local invoke HelloFunction ($run): $(($(now_ms) - t)) ms"
    check_contains "invoke HelloFunction" "$out" 'hello, ci'
    check_contains "invoke runtime" "$out" 'AWS_Lambda_python3.13'
done

NET_ID="$(docker network create "$NET")"
MOTO_ID="$(docker run -d --network "$NET" --network-alias moto imagegen-sam-local/moto:latest 2>/dev/null)"
# moto answers once it is up; ask it from a container on the same network (bounded).
for i in $(seq 1 30); do
    if docker exec "$MOTO_ID" python3 -c 'import urllib.request; urllib.request.urlopen("http://127.0.0.1:5000/moto-api/", timeout=2)' 2>/dev/null; then break; fi
    [ "$i" -eq 30 ] && die "moto did not answer within 30s"
    sleep 1
done
log "moto up on network $NET (alias moto)"

t=$(now_ms)
out="$(timeout 180 "$SAM" local invoke S3Function -e empty.json --skip-pull-image --docker-network "$NET" 2>"$PROJECT/invoke.err")" ||
    { tail -n 30 "$PROJECT/invoke.err" >&2; die "sam local invoke S3Function failed"; }
log "sam local invoke S3Function --docker-network: $(($(now_ms) - t)) ms"
check_contains "invoke S3Function (boto3 -> moto)" "$out" 'stored via moto'

PORT="$(free_port)"
"$SAM" local start-api --host 127.0.0.1 --port "$PORT" --skip-pull-image --docker-network "$NET" \
    >"$PROJECT/start-api.log" 2>&1 &
API_PID=$!
for i in $(seq 1 60); do
    curl -s -m 2 -o /dev/null "http://127.0.0.1:$PORT/" && break
    kill -0 "$API_PID" 2>/dev/null || { tail -n 30 "$PROJECT/start-api.log" >&2; die "sam local start-api exited"; }
    [ "$i" -eq 60 ] && die "sam local start-api did not listen within 60s"
    sleep 1
done
log "sam local start-api listening on 127.0.0.1:$PORT"
for path in "/hello?name=api" "/buckets"; do
    t=$(now_ms)
    out="$(curl -sS -m 120 "http://127.0.0.1:$PORT$path")" || die "curl $path failed"
    log "GET $path: $(($(now_ms) - t)) ms"
    case "$path" in
        /hello*) check_contains "start-api /hello" "$out" 'hello, api' ;;
        /buckets) check_contains "start-api /buckets (moto by name)" "$out" 'stored via moto' ;;
    esac
done
kill -TERM "$API_PID"
for _ in $(seq 1 40); do kill -0 "$API_PID" 2>/dev/null || break; sleep 0.5; done
API_PID=""

# The image on its own, as people use the official one: docker run IMAGE handler, POST an event.
RIE_PORT="$(free_port)"
RIE_ID="$(docker run -d -p "127.0.0.1:$RIE_PORT:8080" -v "$PROJECT/.aws-sam/build/HelloFunction:/var/task:ro" \
    -v "$PROJECT/.aws-sam/build/GreetingLayer:/opt:ro" "public.ecr.aws/lambda/python:3.13-$ARCH" app.handler 2>/dev/null)"
for i in $(seq 1 30); do
    out="$(curl -s -m 10 -d @event.json "http://127.0.0.1:$RIE_PORT/2015-03-31/functions/function/invocations" || true)"
    [ -n "$out" ] && break
    [ "$i" -eq 30 ] && die "docker run IMAGE app.handler did not answer within 30s"
    sleep 1
done
check_contains "docker run IMAGE app.handler (/lambda-entrypoint.sh + RIE)" "$out" 'hello, ci'
