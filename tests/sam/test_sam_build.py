"""sam validate --lint, sam build, and each built handler importing and running from the build output.

In-tree tests import the layer from layers/shared with the venv's packages beside it; here each
function runs from .aws-sam/build with only its layer and what the Lambda runtime ships (boto3), so
a missing requirement, a wrong Handler or a layer laid out in the wrong folder fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.conftest import ROOT, load_event
from tests.http_fixtures import Reply, image_server, png_bytes
from tests.lambda_artefacts import HOST_ARCH, add_bytecode, date_like_a_sam_zip, link_runtime
from tests.task_fixtures import record_task

pytestmark = pytest.mark.sam

SAM = shutil.which("sam", path=str(Path(sys.executable).parent)) or shutil.which("sam")
# The events' task: our id (the callback URL's) and the upstream's (the callback body's).
TASK_ID = "5f0c2a4b9e8d7c6b5a4f3e2d1c0b9a88"
UPSTREAM_ID = "d231a99a9a9f1dd8f895be1b97be8065"


def sam(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    assert SAM, "the SAM CLI is not installed (make install)"
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    # sam build needs python3.13 on PATH: the interpreter running the tests is one.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        [SAM, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_template_passes_sam_validate_lint() -> None:
    result = sam("validate", "--lint")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("sam") / "build"
    # samconfig.toml says cached = true: a cache of its own, so parallel workers never share .aws-sam/cache.
    result = sam(
        "build",
        "--build-dir",
        str(target),
        "--cache-dir",
        str(target.parent / "cache"),
        "--parameter-overrides",
        f"Architecture={HOST_ARCH}",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # What `make build` adds: the bytecode Lambda cannot write for itself.
    compiled = add_bytecode(target)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return target


@pytest.fixture(scope="session")
def runtime_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Only the packages the Lambda runtime ships, linked from this venv."""
    return link_runtime(tmp_path_factory.mktemp("runtime"))


def test_default_build_targets_arm64(tmp_path: Path) -> None:
    result = sam(
        "build", "SharedLayer", "--build-dir", str(tmp_path / "arm"), "--cache-dir", str(tmp_path / "cache")
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cores = list((tmp_path / "arm").rglob("_pydantic_core*.so"))
    assert cores and all("aarch64" in core.name for core in cores), cores


@pytest.fixture
def moto_endpoint() -> Iterator[tuple[str, Any]]:
    from devstack.common.aws_resources import create_stack_resources
    from devstack.common.moto_server import LocalMotoServer

    server = LocalMotoServer().start()
    try:
        session = boto3.Session(region_name="us-east-1")
        os.environ["AWS_ENDPOINT_URL"] = server.endpoint_url
        try:
            resources = create_stack_resources(session, prefix="build")
        finally:
            del os.environ["AWS_ENDPOINT_URL"]
        yield server.endpoint_url, resources
    finally:
        server.stop()


def run_built(
    build_dir: Path, runtime_dir: Path, function: str, event: dict[str, Any], env: dict[str, str]
) -> dict[str, Any]:
    template = (build_dir / "template.yaml").read_text()
    assert f"{function}:" in template
    handler = {
        "ApiFunction": "api_handler",
        "CallbackFunction": "callback_handler",
        "DownloaderFunction": "downloader_handler",
        "ReconcilerFunction": "reconciler_handler",
    }[function]
    # -S: no site-packages, so nothing of the venv leaks in; /opt/python is where Lambda mounts the layer.
    # -B: Lambda's code is read-only, nothing compiled is written back.
    code = (
        "import json, sys\n"
        f"sys.path[:0] = [{str(build_dir / function)!r}, "
        f"{str(build_dir / 'SharedLayer' / 'python')!r}, {str(runtime_dir)!r}]\n"
        f"import {handler} as module\n"
        "class Context:\n"
        "    function_name='built'; memory_limit_in_mb=256; aws_request_id='req-1'\n"
        "    invoked_function_arn='arn:aws:lambda:us-east-1:123456789012:function:built'\n"
        "    def get_remaining_time_in_millis(self): return 30000\n"
        "print(json.dumps(module.lambda_handler(json.load(sys.stdin), Context())))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-B", "-c", code],
        input=json.dumps(event),
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ["PATH"], "POWERTOOLS_METRICS_DISABLED": "true", **env},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def test_built_functions_import_and_run_with_their_layer(
    build_dir: Path, runtime_dir: Path, moto_endpoint: tuple[str, Any]
) -> None:
    endpoint, resources = moto_endpoint
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TASKS_TABLE": resources.tasks_table,
        "IDEMPOTENCY_TABLE": resources.idempotency_table,
        "DOWNLOAD_QUEUE_URL": resources.download_queue_url,
        "IMAGES_BUCKET": resources.images_bucket,
        "KIE_API_KEY": "unused",
        "KIE_API_BASE_URL": "http://127.0.0.1:9",  # nothing listens: no test here reaches the upstream
    }
    # API: validation and a table read.
    answer = run_built(build_dir, runtime_dir, "ApiFunction", load_event("api_submit_task_invalid"), env)
    assert answer["statusCode"] == 422 and "size" in answer["body"]
    answer = run_built(build_dir, runtime_dir, "ApiFunction", load_event("api_get_task_unknown"), env)
    assert answer["statusCode"] == 404

    # Callback: authenticate against the task's own capability, write DynamoDB, send to SQS.
    from image_pipeline.adapters.tasks_table import TasksTable

    dynamodb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    store = TasksTable(resources.tasks_table, dynamodb=dynamodb)
    event = load_event("callback_4o_success")
    assert event["pathParameters"]["taskId"] == TASK_ID
    assert json.loads(event["body"])["data"]["taskId"] == UPSTREAM_ID
    # The task as POST /tasks left it when its generate answer was lost: its callback names the
    # upstream's id.
    record_task(store, TASK_ID, confirmed=False, token=event["queryStringParameters"]["token"])
    with image_server() as server:
        urls = [
            server.serve(f"/s/{UPSTREAM_ID}_{i}.png", Reply(body=png_bytes(32 + i, 32))) for i in range(2)
        ]
        body = json.loads(event["body"])
        body["data"]["info"]["result_urls"] = urls
        event["body"] = json.dumps(body)
        answer = run_built(build_dir, runtime_dir, "CallbackFunction", event, env)
        assert (answer["statusCode"], json.loads(answer["body"])) == (200, {"status": "accepted"})

        # Downloader: the queued jobs as an SQS event, fetched from the local origin, stored in S3.
        sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=endpoint)
        messages = sqs.receive_message(QueueUrl=resources.download_queue_url, MaxNumberOfMessages=10)[
            "Messages"
        ]
        records = load_event("sqs_download_batch")["Records"]
        sqs_event = {
            "Records": [
                {
                    **records[0],
                    "messageId": m["MessageId"],
                    "receiptHandle": m["ReceiptHandle"],
                    "body": m["Body"],
                }
                for m in messages
            ]
        }
        answer = run_built(
            build_dir,
            runtime_dir,
            "DownloaderFunction",
            sqs_event,
            {**env, "DOWNLOAD_TRUSTED_ORIGINS": server.origin},
        )
    assert answer == {"batchItemFailures": []}
    task = store.get_task(TASK_ID)
    assert task is not None and task.status == "stored" and task.storedCount == 2
    assert task.upstream_id == UPSTREAM_ID

    # Reconciler: a scheduled event, a sweep over the status index (nothing pending here).
    answer = run_built(build_dir, runtime_dir, "ReconcilerFunction", load_event("reconciler_scheduled"), env)
    assert answer["checked"] == 0 and answer["errors"] == []


def test_a_cold_start_of_the_build_compiles_none_of_its_modules(build_dir: Path, runtime_dir: Path) -> None:
    # Given the build as `make build` leaves it, every file dated as Lambda sees it after `sam package`
    date_like_a_sam_zip(build_dir)
    # When each handler is imported read-only, counting the modules Python has to compile from source
    counting = (
        "import json, sys\n"
        "import importlib._bootstrap_external as loading\n"
        "compiled = []\n"
        "original = loading.SourceLoader.source_to_code\n"
        "def source_to_code(self, data, path, *args, **kwargs):\n"
        "    compiled.append(path)\n"
        "    return original(self, data, path, *args, **kwargs)\n"
        "loading.SourceLoader.source_to_code = source_to_code\n"
        "sys.path[:0] = json.loads(sys.argv[1])\n"
        "__import__(sys.argv[2])\n"
        "print(json.dumps(compiled))\n"
    )
    for function, handler in (("CallbackFunction", "callback_handler"), ("ApiFunction", "api_handler")):
        paths = [str(build_dir / function), str(build_dir / "SharedLayer" / "python"), str(runtime_dir)]
        done = subprocess.run(
            [sys.executable, "-S", "-B", "-c", counting, json.dumps(paths), handler],
            capture_output=True,
            text=True,
            timeout=120,
            env={
                "PATH": os.environ["PATH"],
                "POWERTOOLS_METRICS_DISABLED": "true",
                "AWS_DEFAULT_REGION": "us-east-1",
            },
            check=False,
        )
        assert done.returncode == 0, done.stderr
        compiled = json.loads(done.stdout.strip().splitlines()[-1])
        # Then none of the function's or the layer's modules is compiled: their shipped bytecode is used
        assert [path for path in compiled if path.startswith(str(build_dir))] == []
    # And every source has hash-checked bytecode for the runtime's Python beside it
    import importlib.util

    missing = [
        str(source.relative_to(build_dir))
        for source in build_dir.rglob("*.py")
        if not Path(importlib.util.cache_from_source(str(source))).exists()
    ]
    assert missing == []
