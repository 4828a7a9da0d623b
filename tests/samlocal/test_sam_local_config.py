"""What `make sam-local` hands `sam local`, checked without a container engine: the local variant of the
template declares every variable the env-vars file sets (sam local drops undeclared ones), and the
env-vars file gives each function what the docker-free stack gives it, with in-network addresses."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import yaml

from devstack import sam_local
from devstack.common.aws_resources import QueueResources, StackResources
from devstack.common.function_environment import declared_environment
from devstack.common.template import ROOT, load_template, resources_of_type

PUBLIC = "http://127.0.0.1:3000"  # start-api, where the emulator's callbacks go


def services(tmp_path: Path) -> sam_local.Services:
    resources = StackResources(
        tasks_table="imagegen-local-TasksTable",
        idempotency_table="imagegen-local-IdempotencyTable",
        download_queue_url="http://127.0.0.1:40001/123456789012/imagegen-local-DownloadQueue",
        download_queue_arn="arn:aws:sqs:us-east-1:123456789012:imagegen-local-DownloadQueue",
        dead_letter_queue_url="http://127.0.0.1:40001/123456789012/imagegen-local-DownloadDeadLetterQueue",
        images_bucket="imagegen-local-imagesbucket",
        max_receive_count=5,
        visibility_timeout=360,
        queues={
            name: QueueResources(
                f"http://127.0.0.1:40001/123456789012/imagegen-local-{name}",
                f"arn:aws:sqs:us-east-1:123456789012:imagegen-local-{name}",
                f"http://127.0.0.1:40001/123456789012/imagegen-local-{dead}",
                dead,
                5,
                360,
            )
            for name, dead in (
                ("DownloadQueue", "DownloadDeadLetterQueue"),
                ("NotificationQueue", "NotificationDeadLetterQueue"),
            )
        },
        event_buses={"EventBus": "imagegen-local-EventBus"},
    )
    found = sam_local.Services(
        name="net",
        cli="docker",
        moto_port=40001,
        upstream_port=40002,
        public_base_url=PUBLIC,
    )
    found.resources = asdict(resources)
    return found


def test_env_vars_give_each_function_its_template_environment_with_network_addresses(tmp_path: Path) -> None:
    environments = services(tmp_path).environments()
    assert set(environments) == set(resources_of_type("AWS::Serverless::Function"))
    for name, env in environments.items():
        assert env["AWS_ENDPOINT_URL"] == "http://net-moto:5000"
        assert set(declared_environment(name)) <= set(env)  # all the template gives it, resolved
        assert set(env) == set(sam_local.local_variable_names()[name])
        assert not any("127.0.0.1" in value for value in env.values() if not value.startswith(PUBLIC))
    api, downloader = environments["ApiFunction"], environments["DownloaderFunction"]
    assert api["KIE_API_BASE_URL"] == downloader["DOWNLOAD_TRUSTED_ORIGINS"] == "http://net-upstream:8080"
    assert "DOWNLOAD_TRUSTED_ORIGINS" not in api
    assert api["DOWNLOAD_QUEUE_URL"] == "http://net-moto:5000/123456789012/imagegen-local-DownloadQueue"
    assert api["CALLBACK_BASE_URL"] == f"{PUBLIC}/callbacks"
    assert api["KIE_API_KEY"] == sam_local.API_KEY and api["KIE_API_KEY_PARAMETER"] == ""
    assert environments["ReconcilerFunction"]["RECONCILE_AFTER_SECONDS"] == "60"
    notifier = environments["NotifierFunction"]
    assert (
        notifier["NOTIFICATION_QUEUE_URL"]
        == "http://net-moto:5000/123456789012/imagegen-local-NotificationQueue"
    )
    assert notifier["EVENT_BUS_NAME"] == "imagegen-local-EventBus"


def test_local_template_declares_every_variable_and_builds_for_this_machine(tmp_path: Path) -> None:
    path = sam_local.write_template(tmp_path, arch="x86_64")
    template = yaml.safe_load(path.read_text())
    original = load_template()
    for name, names in sam_local.local_variable_names().items():
        assert set(names) <= set(declared_environment(name, template))
        # nothing template.yaml gives the function changed
        declared = declared_environment(name, template)
        assert {variable: declared[variable] for variable in declared_environment(name, original)} == (
            declared_environment(name, original)
        )
    assert template["Globals"] == original["Globals"]
    assert template["Parameters"]["Architecture"]["Default"] == "x86_64"
    for resource in template["Resources"].values():
        for key in ("CodeUri", "ContentUri"):
            if key in resource.get("Properties", {}):
                uri = Path(resource["Properties"][key])
                assert uri.is_absolute() and uri.is_dir() and ROOT in uri.parents
    # template.yaml itself, what gets deployed, declares none of the local-only variables
    assert "AWS_ENDPOINT_URL" not in (ROOT / "template.yaml").read_text()


def test_samconfig_points_sam_local_at_the_run(tmp_path: Path) -> None:
    found = services(tmp_path)
    sam_local.write_files(found, tmp_path)
    assert json.loads((tmp_path / "env.json").read_text()) == found.environments()
    text = (tmp_path / "samconfig.toml").read_text()
    assert "[default.local_invoke.parameters]" in text and "[default.local_start_api.parameters]" in text
    assert 'docker_network = "net"' in text and f'env_vars = "{tmp_path / "env.json"}"' in text
    assert 'host = "127.0.0.1"' in text
    assert sam_local.Services.load(tmp_path).resources == found.resources
