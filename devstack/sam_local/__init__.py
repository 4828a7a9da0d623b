"""`sam local` wired to local services: moto and the upstream emulator in containers, on one network.

``make sam-local`` runs ``python -m devstack.sam_local run``:

1. writes ``.aws-sam/sam-local/template.yaml``: template.yaml, plus declarations of the variables only a
   local run sets (AWS_ENDPOINT_URL, KIE_API_KEY, DOWNLOAD_TRUSTED_ORIGINS ...). ``sam local`` passes a
   function only the variables its template declares, whatever ``--env-vars`` holds; template.yaml, which
   is what gets deployed, stays as it is;
2. ``sam build`` of that template for this machine's architecture, into ``.aws-sam/sam-local/build``;
3. ``up``: a user-defined container network; moto (``<name>-moto:5000``) and the emulator
   (``<name>-upstream:8080``) as containers on it, their ports published on 127.0.0.1 only; the tables,
   queues and bucket of template.yaml created in that moto (through the published port); then
   ``env.json`` (for ``--env-vars``: the same variables the docker-free stack gives the functions, with
   the addresses the Lambda containers use on the network) and ``samconfig.toml``;
4. ``sam local start-api --config-file .aws-sam/sam-local/samconfig.toml`` on 127.0.0.1:3000 until
   Ctrl-C, then ``down``: the containers and the network are removed by ID.

The other commands (``python -m devstack.sam_local <command> --help``):

  up / down   the services alone, for ``sam local invoke ... --config-file .aws-sam/sam-local/samconfig.toml``
  seed        put the example task and callback capability that events/*.json name into the table
              (``--clear`` removes them)
  relay ID    hand the emulator's callback for task ID to start-api (where the emulator cannot reach it)
  drain       one SQS batch from the download queue -> ``sam local invoke DownloaderFunction``, as
              Lambda's event source mapping would (deletes what succeeded)
  template    only step 1

Containers cannot reach the host's 127.0.0.1, where start-api listens: the emulator's own callback
delivery fails unless PUBLIC_BASE_URL names an address it can reach (``--public-base-url``, e.g.
http://host.docker.internal:3000 on Docker Desktop or Finch; ``SAM_LOCAL_HOST_GATEWAY=1`` on Linux).
``relay`` does that delivery from this machine instead.

Environment: SAM_LOCAL_CONTAINER_CLI (docker or finch; default: whichever is on PATH),
SAM_LOCAL_MOTO_IMAGE, SAM_LOCAL_EMULATOR_IMAGE (defaults: the offline images of .ci/sam-local when
present, else one image built from python:3.13-slim with moto, pillow, httpx and pydantic),
SAM_LOCAL_PORT, SAM_LOCAL_PUBLIC_BASE_URL, SAM_LOCAL_HOST_GATEWAY, SAM_SKIP_PULL_IMAGE.
"""

from devstack.sam_local.defaults import API_KEY, DEFAULT_NAME, STATE_DIR, SamLocalError, lambda_arch
from devstack.sam_local.engine import container_cli, engine_problem, image_exists
from devstack.sam_local.local_template import (
    compile_bytecode_command,
    find_sam,
    local_environments,
    local_variable_names,
    sam_build_command,
    sam_environment,
    write_template,
)
from devstack.sam_local.operations import EXAMPLE_TASK_ID, drain, relay, sam_invoke, seed, upstream_id
from devstack.sam_local.services import Services, down, running, up, write_files

__all__ = [
    "API_KEY",
    "DEFAULT_NAME",
    "EXAMPLE_TASK_ID",
    "STATE_DIR",
    "SamLocalError",
    "Services",
    "compile_bytecode_command",
    "container_cli",
    "down",
    "drain",
    "engine_problem",
    "find_sam",
    "image_exists",
    "lambda_arch",
    "local_environments",
    "local_variable_names",
    "relay",
    "running",
    "sam_build_command",
    "sam_environment",
    "sam_invoke",
    "seed",
    "up",
    "upstream_id",
    "write_files",
    "write_template",
]
