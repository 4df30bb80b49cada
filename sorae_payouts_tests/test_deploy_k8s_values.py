"""deploy/k8s: the Helm values for Dagster's official chart, the ledger migration Job, the image's
Dockerfile and the README that ties them. No cluster here: these tests read the files, check what the
README relies on, and check that the instance file the chart renders from the values is one Dagster
1.13 accepts, with the same queue limits, pools and retries as the single-host deploy/dagster.yaml."""

from __future__ import annotations

import importlib.util
import re
import tomllib
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.instance.config import dagster_instance_config

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
VALUES = yaml.safe_load((K8S / "values.yaml").read_text())
JOB = yaml.safe_load((K8S / "ledger-migrate-job.yaml").read_text())
README = (K8S / "README.md").read_text()
SINGLE_HOST = yaml.safe_load((REPO / "deploy" / "dagster.yaml").read_text())
APP_SECRETS = {"sorae-ledger-app", "sorae-stripe-platform", "sorae-stripe-merchants"}
OWNER_SECRET = "sorae-ledger-owner"
CAMEL = {
    "startTimeoutSeconds": "start_timeout_seconds",
    "cancelTimeoutSeconds": "cancel_timeout_seconds",
    "maxResumeRunAttempts": "max_resume_run_attempts",
    "pollIntervalSeconds": "poll_interval_seconds",
    "freeSlotsAfterRunEndSeconds": "free_slots_after_run_end_seconds",
}


def _deployment():
    [deployment] = VALUES["dagster-user-deployments"]["deployments"]
    return deployment


def _chart_instance_yaml(values) -> dict:
    """The dagster.yaml that the chart's templates/configmap-instance.yaml renders from these values
    (the parts this deployment sets; storage as the chart writes it, from postgresql.*)."""
    pg = values["postgresql"]
    storage = {
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"],
            "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"],
        }
    }
    daemon = values["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    rendered = {
        "run_storage": {"module": "dagster_postgres.run_storage", "class": "PostgresRunStorage", "config": storage},
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": storage,
        },
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": storage,
        },
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": {}},
        "run_coordinator": {
            "module": "dagster._core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {"dequeue_interval_seconds": queued["dequeueIntervalSeconds"]},
        },
        "run_monitoring": {"enabled": True, **{CAMEL[k]: v for k, v in daemon["runMonitoring"].items() if k in CAMEL}},
        "telemetry": {"enabled": values["telemetry"]["enabled"]},
    }
    overlap = set(rendered) & set(values["additionalInstanceConfig"])
    assert not overlap, f"rendered twice in dagster.yaml: {overlap}"
    return {**rendered, **values["additionalInstanceConfig"]}


def test_chart_instance_config_is_valid_for_dagster_and_matches_the_single_host_file(tmp_path):
    rendered = _chart_instance_yaml(VALUES)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's own validation (raises if refused)
    assert config["concurrency"]["pools"] == SINGLE_HOST["concurrency"]["pools"]
    assert (
        config["concurrency"]["runs"]["tag_concurrency_limits"]
        == SINGLE_HOST["concurrency"]["runs"]["tag_concurrency_limits"]
    )
    assert config["concurrency"]["runs"]["max_concurrent_runs"] >= 1  # sized per platform
    assert config["run_retries"] == SINGLE_HOST["run_retries"]
    shared_monitoring = {k: v for k, v in SINGLE_HOST["run_monitoring"].items() if k in CAMEL.values()}
    assert {k: config["run_monitoring"][k] for k in shared_monitoring} == shared_monitoring
    assert config["run_monitoring"]["enabled"] is True


def test_queue_limits_on_the_coordinator_would_be_refused(tmp_path):
    """Why the limits travel in additionalInstanceConfig: with `concurrency` set, Dagster 1.13 refuses
    coordinator-level limits (the chart's queuedRunCoordinator.tagConcurrencyLimits)."""
    rendered = _chart_instance_yaml(VALUES)
    rendered["run_coordinator"]["config"]["tag_concurrency_limits"] = [{"key": "sorae/paying_account", "limit": 2}]
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    with pytest.raises(dg.DagsterInvalidConfigError, match="tag_concurrency_limits"):
        dagster_instance_config(str(tmp_path))


def test_chart_runs_each_run_as_a_k8s_job_behind_the_daemon_queue():
    assert VALUES["runLauncher"]["type"] == "K8sRunLauncher"
    daemon = VALUES["dagsterDaemon"]
    assert daemon["enabled"] and daemon["runCoordinator"]["enabled"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert not {"maxConcurrentRuns", "tagConcurrencyLimits"} & set(queued)
    assert daemon["runMonitoring"]["enabled"] is True
    # The chart's own renderings of these blocks stay off: additionalInstanceConfig carries them.
    assert daemon["runRetries"]["enabled"] is False and VALUES["concurrency"]["enabled"] is False


def test_code_location_image_and_secrets():
    deployment = _deployment()
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", deployment["name"])  # a Kubernetes name
    assert deployment["image"]["repository"].endswith("/sorae-payouts")
    assert str(deployment["image"]["tag"]) not in ("", "latest")
    assert deployment["dagsterApiGrpcArgs"] == ["-m", "sorae_payouts.definitions"]
    assert importlib.util.find_spec(deployment["dagsterApiGrpcArgs"][1]) is not None
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True  # run pods get env + secrets
    assert deployment["env"]["SORAE_LIVE_PAYOUTS"] in ("0", "1")  # explicit, a string
    assert {s["name"] for s in deployment["envSecrets"]} == APP_SECRETS


def _strings(node):
    if isinstance(node, dict):
        return [s for value in node.values() for s in _strings(value)]
    if isinstance(node, list):
        return [s for value in node for s in _strings(value)]
    return [node] if isinstance(node, str) else []


def test_owner_url_reaches_only_the_migration_job():
    assert OWNER_SECRET not in _strings(VALUES)  # no Dagster pod (code server, run, daemon) mounts it
    [container] = JOB["spec"]["template"]["spec"]["containers"]
    assert container["command"][:3] == ["sorae-payouts", "db", "upgrade"] and "--grant-app-role" in container["command"]
    assert [s["secretRef"]["name"] for s in container["envFrom"]] == [OWNER_SECRET]
    image = _deployment()["image"]
    assert container["image"] == f"{image['repository']}:{image['tag']}"


def test_dagster_instance_database_is_external_with_its_password_in_a_secret():
    pg = VALUES["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"]
    assert "postgresqlPassword" not in pg and VALUES["generatePostgresqlPasswordSecret"] is False
    assert VALUES["global"]["postgresqlSecretName"] == "dagster-postgresql-secret"


@pytest.mark.parametrize("name", ["values.yaml", "ledger-migrate-job.yaml", "Dockerfile", "README.md"])
def test_no_secret_values_in_deploy_files(name):
    text = (K8S / name).read_text()
    assert not re.search(r"\b(sk|rk)_(live|test)_[A-Za-z0-9]{6,}", text), "a Stripe key"
    assert not re.search(r"://[^/\s:@]+:(?![<$])[^@\s/]+@", text), "a URL with a password, not a <placeholder>"


def test_readme_creates_every_secret_and_pins_the_chart_to_the_dagster_version():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dagster_pin = next(d for d in project["dependencies"] if d.startswith("dagster=="))
    assert f"--version {dagster_pin.split('==')[1]}" in README
    assert "helm repo add dagster https://dagster-io.github.io/helm" in README
    for secret in APP_SECRETS | {OWNER_SECRET, VALUES["global"]["postgresqlSecretName"]}:
        assert f"create secret generic {secret}" in README, secret
    for variable in ("SORAE_DATABASE_URL", "SORAE_MIGRATION_DATABASE_URL", "STRIPE_API_KEY", "postgresql-password"):
        assert variable in README, variable


def test_dockerfile_installs_the_project_with_the_pinned_k8s_extra_and_no_secrets():
    dockerfile = (K8S / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r'^RUN pip install "\.\[k8s\]"$', dockerfile, re.M)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    [k8s] = project["optional-dependencies"]["k8s"]
    postgres = next(d for d in project["dependencies"] if d.startswith("dagster-postgres=="))
    assert k8s.split("==")[1] == postgres.split("==")[1], "dagster-k8s pinned with the Dagster family"
    instructions = [line.split()[0] for line in dockerfile.splitlines() if line and not line.startswith(("#", " "))]
    env_lines = [line for line in dockerfile.splitlines() if line.startswith(("ENV", "ARG"))]
    assert "USER" in instructions
    assert not any(word in line for line in env_lines for word in ("STRIPE", "DATABASE_URL", "PASSWORD"))
