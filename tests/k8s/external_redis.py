"""A Redis Cluster outside the release, shaped like a managed one: TLS on every connection (clients,
replication, the cluster bus; clients are not asked for certificates), an ACL user for Airflow besides the
admin ``default`` user, nodes announced by hostname (as ElastiCache and MemoryDB do), so certificate
hostnames can be checked.

Six pods of the project's Redis 8 image (the same redis-server the chart runs) in a namespace of the
project's; the CA and certificates come from tests/harness/servers/tls.py. The cluster is formed once with
``redis-cli --cluster create`` as its operator would (CLUSTER MEET needs addresses: the pod IPs, verified
against the CA like every other connection).
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass

from tests.harness.failover.kubernetes import pod_ready
from tests.harness.servers.tls import CertificateAuthority
from tests.harness.waiting import wait_until
from tests.k8s.conftest import KUBECTL, run

NAME = "ext-redis"
NODES = 6
PORT = 6379
USER = "airflow"

START_SH = """
set -e
conf=/tmp/redis.conf
fqdn="${POD_NAME}.%(name)s.${POD_NAMESPACE}.svc.cluster.local"
cat > "$conf" <<EOF
port 0
tls-port %(port)d
tls-cert-file /tls/tls.crt
tls-key-file /tls/tls.key
tls-ca-cert-file /tls/ca.crt
tls-auth-clients no
tls-cluster yes
tls-replication yes
cluster-enabled yes
cluster-config-file /data/nodes.conf
cluster-node-timeout 5000
cluster-announce-hostname $fqdn
cluster-preferred-endpoint-type hostname
appendonly yes
dir /data
protected-mode no
requirepass $ADMIN_PASSWORD
masterauth $ADMIN_PASSWORD
user %(user)s on >$AIRFLOW_PASSWORD ~* &* +@all
EOF
chmod 600 "$conf"
exec redis-server "$conf"
"""


def _secret(name: str, namespace: str, data: dict[str, bytes | str]) -> dict:
    encoded = {k: base64.b64encode(v if isinstance(v, bytes) else v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "data": encoded}


@dataclass
class ExternalRedis:
    namespace: str
    image: str
    ca: CertificateAuthority
    admin_password: str
    airflow_password: str

    @classmethod
    def create(cls, namespace: str, image: str) -> ExternalRedis:
        return cls(
            namespace,
            image,
            CertificateAuthority.create("external Redis CA"),
            secrets.token_hex(16),
            secrets.token_hex(16),
        )

    @property
    def domain(self) -> str:
        return f"{NAME}.{self.namespace}.svc.cluster.local"

    def host(self, index: int) -> str:
        return f"{NAME}-{index}.{self.domain}"

    @property
    def seeds(self) -> list[str]:
        return [f"{self.host(i)}:{PORT}" for i in range(3)]

    # -- what the release is given: the Secrets a user creates -------------------------------------------------
    def client_secrets(self, wrong_ca: CertificateAuthority) -> list[dict]:
        return [
            _secret(f"{NAME}-airflow", self.namespace, {"password": self.airflow_password}),
            _secret(f"{NAME}-ca", self.namespace, {"ca.crt": self.ca.pem}),
            _secret(f"{NAME}-wrong-ca", self.namespace, {"ca.crt": wrong_ca.pem}),
        ]

    # -- the cluster itself ---------------------------------------------------------------------------------------
    def manifests(self) -> list[dict]:
        cert, key = self.ca.issue(NAME, dns_names=(f"*.{self.domain}", self.domain))
        labels = {"app": NAME, "app.kubernetes.io/part-of": "airflow-ha-test"}
        env = [
            {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{NAME}-server", "key": "admin"}}},
            {"name": "AIRFLOW_PASSWORD", "valueFrom": {"secretKeyRef": {"name": f"{NAME}-server", "key": "airflow"}}},
        ]
        cli = f'redis-cli --tls --cacert /tls/ca.crt -a "$ADMIN_PASSWORD" --no-auth-warning -p {PORT}'
        script = START_SH % {"name": NAME, "port": PORT, "user": USER}
        return [
            _secret(
                f"{NAME}-server",
                self.namespace,
                {
                    "ca.crt": self.ca.pem,
                    "tls.crt": cert,
                    "tls.key": key,
                    "admin": self.admin_password,
                    "airflow": self.airflow_password,
                },
            ),
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": NAME, "namespace": self.namespace, "labels": labels},
                "spec": {
                    "clusterIP": "None",
                    "publishNotReadyAddresses": True,
                    "selector": {"app": NAME},
                    "ports": [{"name": "redis", "port": PORT}],
                },
            },
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": NAME, "namespace": self.namespace, "labels": labels},
                "spec": {
                    "serviceName": NAME,
                    "replicas": NODES,
                    "podManagementPolicy": "Parallel",
                    "selector": {"matchLabels": {"app": NAME}},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {
                            "securityContext": {"runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
                            "containers": [
                                {
                                    "name": "redis",
                                    "image": self.image,
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["sh", "-c", script],
                                    "env": env,
                                    "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}},
                                    "readinessProbe": {
                                        "exec": {"command": ["sh", "-c", f"{cli} ping | grep -q PONG"]},
                                        "periodSeconds": 2,
                                    },
                                    "volumeMounts": [
                                        {"name": "tls", "mountPath": "/tls", "readOnly": True},
                                        {"name": "data", "mountPath": "/data"},
                                    ],
                                }
                            ],
                            "volumes": [
                                {"name": "tls", "secret": {"secretName": f"{NAME}-server"}},
                                {"name": "data", "emptyDir": {}},
                            ],
                        },
                    },
                },
            },
        ]

    def apply(self, objects: list[dict]) -> None:
        run([KUBECTL, "apply", "-f", "-"], input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))

    def start(self, kube) -> None:
        """Apply, wait for the six pods, form the cluster, wait for cluster_state:ok."""
        self.apply(self.manifests())

        def pod_ips():
            pods = kube.core.list_namespaced_pod(self.namespace, label_selector=f"app={NAME}").items
            ready = [p for p in pods if pod_ready(p)]
            return {p.metadata.name: p.status.pod_ip for p in ready} if len(ready) == NODES else None

        ips = wait_until(pod_ips, 300, f"{NODES} {NAME} pods Ready", interval=2)
        addresses = " ".join(f"{ips[f'{NAME}-{i}']}:{PORT}" for i in range(NODES))
        self.redis_cli(f"--cluster create {addresses} --cluster-replicas 1 --cluster-yes", timeout=120)
        wait_until(
            lambda: all("cluster_state:ok" in self.redis_cli("cluster info", pod=i) for i in range(NODES)),
            120,
            f"cluster_state:ok on every {NAME} node",
            interval=2,
        )

    def redis_cli(self, args: str, pod: int = 0, timeout: float = 30) -> str:
        """redis-cli as the cluster's admin, in one of its pods, over TLS by hostname (checked against the CA)."""
        cmd = (
            f"redis-cli --tls --cacert /tls/ca.crt -h {self.host(pod)} -p {PORT} "
            f'-a "$ADMIN_PASSWORD" --no-auth-warning {args}'
        )
        return run(
            [KUBECTL, "-n", self.namespace, "exec", f"{NAME}-{pod}", "-c", "redis", "--", "sh", "-c", cmd],
            timeout=timeout,
        ).stdout
