"""What the per-component chart test modules share: the release name, the Airflow workloads and the
env every Airflow container gets, and small accessors of rendered pod specs."""

from __future__ import annotations

import base64
import re

R = "airflow-ha"
AIRFLOW_WORKLOADS = {
    ("Deployment", f"{R}-api-server"): "api-server",
    ("Deployment", f"{R}-scheduler"): "scheduler",
    ("Deployment", f"{R}-dag-processor"): "dag-processor",
    ("Deployment", f"{R}-triggerer"): "triggerer",
    ("Deployment", f"{R}-triggerer-default"): "triggerer-default",
    ("StatefulSet", f"{R}-worker"): "worker",
    ("Deployment", f"{R}-sensor-shard-0"): "sensor-shard",
    ("Deployment", f"{R}-sensor-shard-1"): "sensor-shard",
}
SECRET_ENV = {
    "AIRFLOW_HA_DB_PASSWORD": (f"{R}-mysql-passwords", "mysql-password"),
    "AIRFLOW_HA_REDIS_PASSWORD": (f"{R}-redis-password", "password"),
    "AIRFLOW__CORE__FERNET_KEY": (f"{R}-fernet-key", "fernet-key"),
    "AIRFLOW__API_AUTH__JWT_SECRET": (f"{R}-api-secrets", "jwt-secret"),
    "AIRFLOW__API__SECRET_KEY": (f"{R}-api-secrets", "api-secret-key"),
}
# Connection URLs: plain values whose password is a $(VAR) of a SECRET_ENV variable defined before them.
URL_ENV = {
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "AIRFLOW_HA_DB_PASSWORD",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": "AIRFLOW_HA_DB_PASSWORD",
    "AIRFLOW__CELERY__RESULT_BACKEND": "AIRFLOW_HA_DB_PASSWORD",
    "AIRFLOW__CELERY__BROKER_URL": "AIRFLOW_HA_REDIS_PASSWORD",
}
PLAIN_ENV = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "airflow_ha.broker.celery_config.CELERY_CONFIG",
    "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{R}-api-server:8080/execution/",
    "AIRFLOW__TRIGGERER__QUEUES_ENABLED": "True",
    "AIRFLOW__TRIGGERER__TRIGGERER_HEALTH_CHECK_THRESHOLD": "20",
    "AIRFLOW_HA_SENSOR_SHARDS": "2",
    "AIRFLOW_HA_VIRTUAL_SHARDS": "64",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
    "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": "/opt/airflow/auth/passwords.json",
    "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "300",
    "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_THRESHOLD": "30",
    "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": "8793",
}


def secret_value(rendered, name: str, key: str) -> str:
    return base64.b64decode(rendered.get("Secret", name)["data"][key]).decode()


def pod(rendered, kind: str, name: str) -> dict:
    return rendered.get(kind, name)["spec"]["template"]["spec"]


VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expanded_env(rendered, container: dict) -> dict[str, str]:
    """A container's environment as its process sees it: secretKeyRefs read from the rendered Secrets, and
    ``$(VAR)`` in a value replaced by a variable defined EARLIER in the list (the kubelet's rule; a later or
    unknown one stays as written, which is how a wrong order shows)."""
    env: dict[str, str] = {}
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref and rendered.has("Secret", ref["name"]):
            env[e["name"]] = secret_value(rendered, ref["name"], ref["key"])
        elif ref:  # a Secret of the user's: a URL-safe stand-in naming it
            env[e["name"]] = re.sub(r"\W", "_", f"from_{ref['name']}_{ref['key']}")
        elif "value" in e:
            env[e["name"]] = VAR_REF.sub(lambda m: env.get(m.group(1), m.group(0)), e["value"])
    return env


def pod_url(rendered, var: str, kind: str = "Deployment", name: str = f"{R}-scheduler") -> str:
    """A connection URL as the main container of that workload (default: the scheduler) gets it."""
    return expanded_env(rendered, pod(rendered, kind, name)["containers"][0])[var]


def ports(c: dict) -> set[int]:
    return {p["containerPort"] for p in c.get("ports", [])}


def pod_meta(rendered, kind: str, name: str) -> dict:
    return rendered.get(kind, name)["spec"]["template"]["metadata"]


def shard_groups(rendered) -> dict[int, dict]:
    """Sensor-shard group number -> its Deployment."""
    prefix = f"{R}-sensor-shard-"
    return {
        int(d["metadata"]["name"][len(prefix) :]): d
        for d in rendered.of_kind("Deployment")
        if d["metadata"]["name"].startswith(prefix)
    }


NODE_LOSS = {"node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready"}


def node_loss_tolerations(spec: dict) -> set[tuple[str, int]]:
    """(taint key, tolerationSeconds) of a pod spec's tolerations of a lost node."""
    return {(t["key"], t["tolerationSeconds"]) for t in spec.get("tolerations", []) if t["key"] in NODE_LOSS}


def worker_sets(rendered) -> list[dict]:
    """Every worker StatefulSet: <release>-worker, or one per workers.groups entry."""
    return [
        s
        for s in rendered.of_kind("StatefulSet")
        if s["spec"]["template"]["metadata"]["labels"].get("component") == "worker"
    ]


def queues_served(rendered) -> set[str]:
    """The Celery queues some worker set consumes (its `--queues`)."""
    served = set()
    for sts in worker_sets(rendered):
        args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        served |= set(args[args.index("--queues") + 1].split(",")) if "--queues" in args else {"default"}
    return served


def airflow_containers(rendered, init_containers: bool = True) -> list[tuple[str, dict]]:
    """("<workload>/<container>", container) of every container that runs Airflow (it gets the executor)."""
    return [
        (f"{name}/{c['name']}", c)
        for name, spec in rendered.pod_specs()
        for c in [*spec["containers"], *(spec.get("initContainers", []) if init_containers else [])]
        if any(e["name"] == "AIRFLOW__CORE__EXECUTOR" for e in c.get("env", []))
    ]
