#!/bin/sh
# Stand-in for /lambda-entrypoint.sh of the official Lambda base images (offline CI only).
# `docker run IMAGE handler.fn` starts the runtime interface emulator (if one is in the image) in front of
# the Python runtime; inside Lambda (AWS_LAMBDA_RUNTIME_API set) it runs the runtime directly.
# `sam local` does not use this: it overrides the entrypoint with /var/rapid/aws-lambda-rie, which finds
# /var/runtime/bootstrap by itself.
if [ $# -ne 1 ]; then
  echo "entrypoint requires the handler name to be the first argument" 1>&2
  exit 142
fi
export _HANDLER="$1"

RUNTIME_ENTRYPOINT=/var/runtime/bootstrap
if [ -z "${AWS_LAMBDA_RUNTIME_API}" ]; then
  for rie in /usr/local/bin/aws-lambda-rie /var/rapid/aws-lambda-rie; do
    [ -x "$rie" ] && exec "$rie" "$RUNTIME_ENTRYPOINT"
  done
  echo "no runtime interface emulator in this image: mount one at /usr/local/bin/aws-lambda-rie" 1>&2
  exit 127
else
  exec "$RUNTIME_ENTRYPOINT"
fi
