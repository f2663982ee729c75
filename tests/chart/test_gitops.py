"""Bring your own secrets: with every secret named (values/gitops.yaml) the chart renders no Secret, no secret
value and the same output on every render; each pod reads the named Secrets; a partly named set generates
the rest. The default still generates everything (and, with no cluster to look up, differently each time)."""

from __future__ import annotations

import pytest
import yaml

from tests.chart.components import R, expanded_env, pod, pod_url
from tests.chart.conftest import VALUES_DIR, RenderError, helm_template

pytestmark = pytest.mark.chart

USER_SECRETS = {"airflow-ha-keys", "airflow-ha-redis", "airflow-ha-mysql", "airflow-ha-log-store"}


def secret_refs(objects: list[dict]) -> set[tuple[str, str]]:
    refs = set()
    for obj in objects:
        spec = obj.get("spec", {}).get("template", {}).get("spec") or obj.get("spec", {}).get("jobTemplate", {})
        text = yaml.safe_dump(spec)
        for doc in yaml.safe_load_all(text):
            _collect(doc, refs)
    return refs


def _collect(node, refs) -> None:
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            refs.add((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
        if "secretName" in node:
            refs.add((node["secretName"], "*"))
        for value in node.values():
            _collect(value, refs)
    elif isinstance(node, list):
        for value in node:
            _collect(value, refs)


def test_gitops_renders_no_secret_and_the_same_every_time(helm_binary):
    args = ("-f", str(VALUES_DIR / "production.yaml"), "-f", str(VALUES_DIR / "gitops.yaml"))
    first, second = helm_template(helm_binary, *args), helm_template(helm_binary, *args)
    assert first == second
    objects = [o for o in yaml.safe_load_all(first) if o]
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"] == []
    names = {name for name, _key in secret_refs(objects)}
    assert names == USER_SECRETS, names
    # the default generates its secrets: two renders without a cluster differ
    assert helm_template(helm_binary) != helm_template(helm_binary)


def test_gitops_pods_read_the_named_secrets(render):
    rendered = render("gitops.yaml")
    env = expanded_env(rendered, pod(rendered, "Deployment", f"{R}-scheduler")["containers"][0])
    assert env["AIRFLOW__CORE__FERNET_KEY"] == "from_airflow_ha_keys_fernet_key"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
        f"mysql+mysqldb://airflow:from_airflow_ha_mysql_mysql_password@{R}-mysql:3306/airflow?"
    )
    assert pod_url(rendered, "AIRFLOW__CELERY__BROKER_URL").startswith(
        "rediscluster://:from_airflow_ha_redis_password@"
    )
    redis_env = {e["name"]: e for e in pod(rendered, "StatefulSet", f"{R}-redis")["containers"][0]["env"]}
    assert redis_env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "airflow-ha-redis", "key": "password"}
    auth = {v["name"]: v for v in pod(rendered, "Deployment", f"{R}-api-server")["volumes"]}["auth-secret"]
    assert auth["secret"]["secretName"] == "airflow-ha-keys"


def test_a_partly_named_set_generates_the_rest(render):
    rendered = render(None, "secrets.redisPassword.existingSecret=corp-redis", "secrets.redisPassword.key=pw")
    secrets = {o["metadata"]["name"] for o in rendered.of_kind("Secret")}
    assert f"{R}-redis-password" not in secrets and f"{R}-mysql-passwords" in secrets
    assert f"{R}-connections" not in secrets  # it would need the Redis password
    env = {e["name"]: e for e in pod(rendered, "Deployment", f"{R}-scheduler")["containers"][0]["env"]}
    assert env["AIRFLOW_HA_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "corp-redis", "key": "pw"}
    assert env["AIRFLOW_HA_DB_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{R}-mysql-passwords",
        "key": "mysql-password",
    }


def test_a_bad_secret_name_fails_with_the_schema_message(helm_binary):
    with pytest.raises(RenderError) as err:
        helm_template(helm_binary, "--set", "secrets.fernetKey.existingSecret=My_Keys")
    assert "at '/secrets/fernetKey/existingSecret'" in err.value.stderr, err.value.stderr


def test_jobs_as_hooks_by_default_and_plain_jobs_for_argo_cd(default, render):
    def jobs(rendered):
        return {j["metadata"]["name"]: j for j in rendered.of_kind("Job")}

    for job in jobs(default).values():  # helm install/upgrade runs them after the release's resources
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
        assert "ttlSecondsAfterFinished" not in job["spec"]  # a hook is replaced on each upgrade anyway
    argo = render(
        "kubeone.yaml",
        "migrateDatabaseJob.useHelmHooks=false",
        "redis.bootstrap.useHelmHooks=false",
        "migrateDatabaseJob.jobAnnotations.argocd\\.argoproj\\.io/hook=Sync",
    )
    plain = jobs(argo)
    # the after-bootstrap placement hook needs the bootstrap hook before it: the CronJob repairs placement
    assert set(plain) == {f"{R}-migrate-db", f"{R}-redis-bootstrap"}
    for name, job in plain.items():
        assert "helm.sh/hook" not in job["metadata"].get("annotations", {}), name
        assert job["spec"]["ttlSecondsAfterFinished"] == 300, name  # gone before the next image can apply
    assert plain[f"{R}-migrate-db"]["metadata"]["annotations"] == {"argocd.argoproj.io/hook": "Sync"}
    assert argo.of_kind("CronJob")
