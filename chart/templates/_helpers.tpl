{{/* ------------------------------------------------------------------------------------------------
Names, labels and the pieces every Airflow pod shares. Object names are "<fullname>-<component>";
fullname is the release name (or fullnameOverride), so `helm install airflow-ha` gives the Service
airflow-ha-api-server.
------------------------------------------------------------------------------------------------- */}}

{{- define "airflow-ha.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end }}

{{- define "airflow-ha.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end }}

{{/* Labels of every object. Call with (dict "root" $ "component" "scheduler"). */}}
{{- define "airflow-ha.labels" -}}
helm.sh/chart: {{ include "airflow-ha.chart" .root }}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
component: {{ .component }}
{{- end }}
{{- with .extraSelector }}
{{ toYaml . }}
{{- end }}
{{- with .root.Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels (immutable). Call with (dict "root" $ "component" "scheduler" ["extraSelector" LABELS]);
     extraSelector (also honoured by airflow-ha.labels) tells one set of a component's pods from the others
     (a worker group). */}}
{{- define "airflow-ha.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
component: {{ .component }}
{{- with .extraSelector }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod template labels: selector labels + the common ones + podLabels. */}}
{{- define "airflow-ha.podLabels" -}}
{{ include "airflow-ha.labels" . }}
{{- with .root.Values.podLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "airflow-ha.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (printf "%s-airflow" (include "airflow-ha.fullname" .)) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end }}

{{/* ---------------------------------- object names --------------------------------------------- */}}
{{- define "airflow-ha.redis.fullname" -}}{{ include "airflow-ha.fullname" . }}-redis{{- end }}
{{- define "airflow-ha.redis.headless" -}}{{ include "airflow-ha.fullname" . }}-redis-headless{{- end }}
{{- define "airflow-ha.mysql.fullname" -}}{{ include "airflow-ha.fullname" . }}-mysql{{- end }}
{{- define "airflow-ha.worker.fullname" -}}{{ include "airflow-ha.fullname" . }}-worker{{- end }}

{{/* The worker sets, a YAML list: without workers.groups one set (<release>-worker, workers' values, every
     queue its args name); with them one per group (<release>-worker-<name>, `--queues <its queues>`, the
     group's own replicas/concurrency/resources/scheduling over the workers' values). Each item: fullname,
     group ("" for the single set), selector (the labels that tell its pods from other sets': "extraSelector"
     of the label helpers), args, values. Fails on what would leave tasks unserved. */}}
{{- define "airflow-ha.workerSets" -}}
{{- $w := .Values.workers }}
{{- $fullname := include "airflow-ha.worker.fullname" . }}
{{- $base := omit $w "groups" }}
{{- if not $w.groups }}
{{- list (dict "fullname" $fullname "group" "" "selector" dict "args" $w.args "values" $base) | toYaml }}
{{- else }}
{{- if or (has "--queues" $w.args) (has "-q" $w.args) }}
{{- fail "workers.args names --queues while workers.groups is set: each group's queues come from workers.groups[].queues; drop --queues from workers.args" }}
{{- end }}
{{- $defaultQueue := default "default" (dig "operators" "default_queue" "" .Values.config) }}
{{- $served := list }}
{{- $names := list }}
{{- $sets := list }}
{{- range $g := $w.groups }}
{{- if has $g.name $names }}
{{- fail (printf "workers.groups: the name %q is used twice; each group is its own StatefulSet <release>-worker-<name>" $g.name) }}
{{- end }}
{{- $names = append $names $g.name }}
{{- $served = concat $served $g.queues }}
{{- $values := deepCopy $base }}
{{- range $key, $val := omit $g "name" "queues" }}
{{- $_ := set $values $key $val }}
{{- end }}
{{- $args := concat $w.args (list "--queues" (join "," $g.queues)) }}
{{- $selector := dict "airflow-ha/worker-group" $g.name }}
{{- $sets = append $sets (dict "fullname" (printf "%s-%s" $fullname $g.name) "group" $g.name "selector" $selector "args" $args "values" $values) }}
{{- end }}
{{- if not (has $defaultQueue $served) }}
{{- fail (printf "workers.groups: no group consumes the default queue %q (config.operators.default_queue), so every task without a queue of its own would wait forever; add it to one group's queues" $defaultQueue) }}
{{- end }}
{{- $sets | toYaml }}
{{- end }}
{{- end }}

{{/* Worker replicas over every worker set. */}}
{{- define "airflow-ha.workerReplicas" -}}
{{- $n := 0 }}
{{- range $set := include "airflow-ha.workerSets" . | fromYamlArray }}
{{- $n = add $n (int $set.values.replicas) }}
{{- end }}
{{- $n -}}
{{- end }}
{{- define "airflow-ha.secret.fernet" -}}{{ include "airflow-ha.fullname" . }}-fernet-key{{- end }}
{{- define "airflow-ha.secret.api" -}}{{ include "airflow-ha.fullname" . }}-api-secrets{{- end }}
{{- define "airflow-ha.secret.redis" -}}{{ include "airflow-ha.fullname" . }}-redis-password{{- end }}
{{- define "airflow-ha.secret.mysql" -}}{{ include "airflow-ha.fullname" . }}-mysql-passwords{{- end }}
{{- define "airflow-ha.secret.connections" -}}{{ include "airflow-ha.fullname" . }}-connections{{- end }}
{{- define "airflow-ha.secret.admin" -}}{{ include "airflow-ha.fullname" . }}-admin-password{{- end }}
{{- define "airflow-ha.secret.logStore" -}}{{ include "airflow-ha.fullname" . }}-log-store{{- end }}
{{- define "airflow-ha.logStore.fullname" -}}{{ include "airflow-ha.fullname" . }}-log-store{{- end }}
{{- define "airflow-ha.logStore.headless" -}}{{ include "airflow-ha.fullname" . }}-log-store-headless{{- end }}

{{/* Number of Redis pods: masters * (1 + replicasPerMaster). */}}
{{- define "airflow-ha.redis.nodeCount" -}}
{{- mul (int .Values.redis.masters) (add 1 (int .Values.redis.replicasPerMaster)) -}}
{{- end }}

{{/* Space-separated stable hostnames of every Redis pod (no port). */}}
{{- define "airflow-ha.redis.hosts" -}}
{{- $fn := include "airflow-ha.redis.fullname" . -}}
{{- $hl := include "airflow-ha.redis.headless" . -}}
{{- $hosts := list -}}
{{- range $i := until (int (include "airflow-ha.redis.nodeCount" .)) -}}
{{- $hosts = append $hosts (printf "%s-%d.%s.%s.svc.cluster.local" $fn $i $hl $.Release.Namespace) -}}
{{- end -}}
{{- join " " $hosts -}}
{{- end }}

{{/* "true" when the broker is the user's Redis Cluster (broker.external): no Redis is deployed. */}}
{{- define "airflow-ha.broker.external" -}}
{{- if .Values.broker.external.enabled }}true{{ end -}}
{{- end }}

{{/* "true" when Airflow pods mount the CA bundle of an external broker's TLS (broker.external.tls.caSecret). */}}
{{- define "airflow-ha.broker.caMounted" -}}
{{- $ext := .Values.broker.external -}}
{{- if and $ext.enabled $ext.tls.enabled $ext.tls.caSecret.name }}true{{ end -}}
{{- end }}

{{/* Where the CA bundle of an external broker's TLS is mounted in Airflow pods. */}}
{{- define "airflow-ha.broker.caDir" -}}/opt/airflow/broker-tls{{- end }}

{{/* The broker's seed nodes, host:port joined by ",": the external cluster's, or every Redis pod. */}}
{{- define "airflow-ha.broker.seeds" -}}
{{- if include "airflow-ha.broker.external" . -}}
{{- join "," .Values.broker.external.seeds -}}
{{- else -}}
{{- $port := int .Values.redis.port -}}
{{- $seeds := list -}}
{{- range $h := splitList " " (include "airflow-ha.redis.hosts" .) -}}
{{- $seeds = append $seeds (printf "%s:%d" $h $port) -}}
{{- end -}}
{{- join "," $seeds -}}
{{- end -}}
{{- end }}

{{/* The Celery broker URL (password included): rediscluster://:PW@<every redis pod>:6379,...; with
     broker.external: redisclusters://USER:PW@<its seeds>?ssl_ca_certs=... (TLS), the user's ACL user. */}}
{{- define "airflow-ha.brokerUrl" -}}
{{- $ext := .root.Values.broker.external -}}
{{- $external := include "airflow-ha.broker.external" .root -}}
{{- $query := list -}}
{{- if and $external $ext.tls.enabled -}}
{{- if $ext.tls.caSecret.name -}}
{{- $query = append $query (printf "ssl_ca_certs=%s/ca.crt" (include "airflow-ha.broker.caDir" .root)) -}}
{{- end -}}
{{- if not $ext.tls.checkHostname -}}
{{- $query = append $query "ssl_check_hostname=false" -}}
{{- end -}}
{{- end -}}
{{- range $k, $v := .root.Values.broker.transportOptions -}}
{{- if not (kindIs "invalid" $v) -}}
{{- $text := ternary (join "," $v) (toString $v) (kindIs "slice" $v) -}}
{{- $query = append $query (printf "%s=%s" $k ($text | urlquery)) -}}
{{- end -}}
{{- end -}}
{{- $scheme := ternary "redisclusters" "rediscluster" (and (ne $external "") (eq $ext.tls.enabled true)) -}}
{{- $user := ternary (urlquery $ext.username) "" (ne $external "") -}}
{{- /* .password: already URL-encoded by the caller (or a $(VAR) the kubelet expands); "" = no AUTH */ -}}
{{- $auth := ternary (printf "%s:%s@" $user .password) "" (or (ne .password "") (ne $user "")) -}}
{{- printf "%s://%s%s" $scheme $auth (include "airflow-ha.broker.seeds" .root) -}}
{{- with $query }}?{{ join "&" . }}{{ end -}}
{{- end }}

{{/* name/key of the broker's password: the external cluster's passwordSecret, or secrets.redisPassword.
     Empty for an external cluster without AUTH. */}}
{{- define "airflow-ha.redisPasswordKeyRef" -}}
{{- if include "airflow-ha.broker.external" . -}}
{{- with .Values.broker.external.passwordSecret -}}
{{- if .name -}}
name: {{ .name }}
key: {{ .key }}
{{- end -}}
{{- end -}}
{{- else -}}
{{ include "airflow-ha.secretKeyRef" (dict "root" . "secret" "redisPassword") }}
{{- end -}}
{{- end }}

{{/* Host/port/user/database of the metadata DB (in-release MySQL or external). */}}
{{- define "airflow-ha.db.host" -}}
{{- if .Values.database.external.enabled -}}{{ .Values.database.external.host }}{{- else if eq .Values.mysql.mode "groupReplication" -}}{{ include "airflow-ha.mysql.fullname" . }}-proxy{{- else -}}{{ include "airflow-ha.mysql.fullname" . }}{{- end -}}
{{- end }}
{{- define "airflow-ha.db.port" -}}
{{- if .Values.database.external.enabled -}}{{ int .Values.database.external.port }}{{- else -}}3306{{- end -}}
{{- end }}
{{- define "airflow-ha.db.user" -}}
{{- if .Values.database.external.enabled -}}{{ .Values.database.external.user }}{{- else -}}{{ .Values.database.user }}{{- end -}}
{{- end }}
{{- define "airflow-ha.db.name" -}}
{{- if .Values.database.external.enabled -}}{{ .Values.database.external.database }}{{- else -}}{{ .Values.database.name }}{{- end -}}
{{- end }}

{{/* Every secret the release uses: values key under `secrets` -> (generated Secret, its key). A secret whose
     `existingSecret` is set is read from that Secret (its `key`) and never generated or looked up. */}}
{{- define "airflow-ha.secretTable" -}}
fernetKey: [{{ include "airflow-ha.secret.fernet" . }}, fernet-key]
jwtSecret: [{{ include "airflow-ha.secret.api" . }}, jwt-secret]
apiSecretKey: [{{ include "airflow-ha.secret.api" . }}, api-secret-key]
adminPasswords: [{{ include "airflow-ha.secret.admin" . }}, passwords.json]
redisPassword: [{{ include "airflow-ha.secret.redis" . }}, password]
mysqlPassword: [{{ include "airflow-ha.secret.mysql" . }}, mysql-password]
mysqlRootPassword: [{{ include "airflow-ha.secret.mysql" . }}, mysql-root-password]
mysqlRecoveryPassword: [{{ include "airflow-ha.secret.mysql" . }}, mysql-recovery-password]
logStoreAccessKey: [{{ include "airflow-ha.secret.logStore" . }}, access-key-id]
logStoreSecretKey: [{{ include "airflow-ha.secret.logStore" . }}, secret-access-key]
{{- end }}

{{/* "true" when the chart generates this secret: (dict "root" $ "secret" KEY) */}}
{{- define "airflow-ha.secretGenerated" -}}
{{- if not (get .root.Values.secrets .secret).existingSecret }}true{{ end -}}
{{- end }}

{{/* name/key of a secret, the user's or the generated one: (dict "root" $ "secret" KEY) */}}
{{- define "airflow-ha.secretKeyRef" -}}
{{- $user := get .root.Values.secrets .secret -}}
{{- $generated := get (include "airflow-ha.secretTable" .root | fromYaml) .secret -}}
{{- if $user.existingSecret -}}
name: {{ $user.existingSecret }}
key: {{ $user.key | default (index $generated 1) }}
{{- else -}}
name: {{ index $generated 0 }}
key: {{ index $generated 1 }}
{{- end -}}
{{- end }}

{{/* "true" when Airflow connects to the external database with TLS (database.external.tls). */}}
{{- define "airflow-ha.db.tls" -}}
{{- if and .Values.database.external.enabled .Values.database.external.tls.enabled }}true{{ end -}}
{{- end }}

{{/* "true" when Airflow pods mount the CA bundle of the external database's TLS. */}}
{{- define "airflow-ha.db.caMounted" -}}
{{- if and (include "airflow-ha.db.tls" .) .Values.database.external.tls.caSecret.name }}true{{ end -}}
{{- end }}

{{/* Where that CA bundle is mounted. */}}
{{- define "airflow-ha.db.caDir" -}}/opt/airflow/db-tls{{- end }}

{{/* name/key of the password Airflow connects to the metadata DB with. */}}
{{- define "airflow-ha.dbPasswordKeyRef" -}}
{{- if .Values.database.external.enabled -}}
name: {{ .Values.database.external.passwordSecret.name }}
key: {{ .Values.database.external.passwordSecret.key }}
{{- else -}}
{{ include "airflow-ha.secretKeyRef" (dict "root" . "secret" "mysqlPassword") }}
{{- end -}}
{{- end }}

{{/* A metadata DB URL: (dict "root" $ "scheme" S "password" ALREADY_ENCODED "query" "?..." or "") */}}
{{- define "airflow-ha.dbUrl" -}}
{{- $r := .root -}}
{{- printf "%s://%s:%s@%s:%s/%s%s" .scheme (urlquery (include "airflow-ha.db.user" $r)) .password (include "airflow-ha.db.host" $r) (include "airflow-ha.db.port" $r) (include "airflow-ha.db.name" $r) .query -}}
{{- end }}

{{/* The DB URLs' queries: client timeouts (database.timeouts). A pooled connection through a proxy pod on a
     powered-off node gets no RST and would wait on TCP retransmissions for ~15 min without a read timeout.
     "timeouts": all three; "connect": connect_timeout only (the migration Job: an ALTER on a big table may
     run long; aiomysql, Airflow's async engine, takes only connect_timeout). */}}
{{- define "airflow-ha.dbQuery" -}}
{{- $t := .root.Values.database.timeouts -}}
{{- $q := list -}}
{{- /* TLS to an external database, for the mysqlclient URLs (sync engine, result backend, migration). With
       MariaDB Connector/C (the image's client library), measured: ssl_ca alone verifies the chain but no
       name; ssl_mode=VERIFY_IDENTITY verifies both (with the system CAs when no ssl_ca); VERIFY_CA checks
       the name as well, so "chain only" is ssl_ca without ssl_mode (the system bundle when no CA Secret).
       aiomysql takes neither from the URL: Airflow's async engine gets an SSLContext through
       [database] sql_alchemy_connect_args_async (airflow_ha.db_tls). */ -}}
{{- if and (not .async) (include "airflow-ha.db.tls" .root) -}}
{{- $tls := .root.Values.database.external.tls -}}
{{- $ca := ternary (printf "%s/ca.crt" (include "airflow-ha.db.caDir" .root)) "" (ne $tls.caSecret.name "") -}}
{{- if $tls.checkHostname -}}
{{- if $ca }}{{ $q = append $q (printf "ssl_ca=%s" $ca) }}{{ end -}}
{{- $q = append $q "ssl_mode=VERIFY_IDENTITY" -}}
{{- else -}}
{{- $q = append $q (printf "ssl_ca=%s" (default "/etc/ssl/certs/ca-certificates.crt" $ca)) -}}
{{- end -}}
{{- end -}}
{{- if gt (int $t.connectSeconds) 0 }}{{ $q = append $q (printf "connect_timeout=%d" (int $t.connectSeconds)) }}{{ end -}}
{{- if eq .which "timeouts" -}}
{{- if gt (int $t.readSeconds) 0 }}{{ $q = append $q (printf "read_timeout=%d" (int $t.readSeconds)) }}{{ end -}}
{{- if gt (int $t.writeSeconds) 0 }}{{ $q = append $q (printf "write_timeout=%d" (int $t.writeSeconds)) }}{{ end -}}
{{- end -}}
{{- with $q }}?{{ join "&" . }}{{ end -}}
{{- end }}

{{/* A value kept from the existing Secret (lookup) or freshly generated: (dict "root" $ "secret" NAME "key" KEY "generate" VALUE) */}}
{{- define "airflow-ha.keptSecretValue" -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- .generate -}}
{{- end -}}
{{- end }}

{{/* ---------------------------------- Airflow pods ---------------------------------------------- */}}

{{/* The environment of every Airflow container: (dict "root" $ "migration" BOOL); the migration Job's
     connection has no read/write timeouts (database.timeouts). */}}
{{- define "airflow-ha.env" -}}
{{- $migration := .migration -}}
{{- $concurrency := default .root.Values.workers.concurrency .concurrency -}}
{{- $root := .root -}}
{{- $hostnameCallable := .hostnameCallable -}}
{{- with .root -}}
- name: AIRFLOW__CORE__EXECUTOR
  value: CeleryExecutor
{{- /* The URLs carry $(VAR) references the kubelet expands from the two passwords above them: no URL
       is a Secret of its own, so Secrets named by the user (secrets.*, database.external) work with
       `helm template` (GitOps) and nothing is looked up. The passwords must be URL-safe (generated ones
       are; `airflow-ha wait-for-migrations` refuses others, naming the Secret). */}}
- name: AIRFLOW_HA_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "airflow-ha.dbPasswordKeyRef" . | nindent 6 }}
{{- $redisPw := include "airflow-ha.redisPasswordKeyRef" . }}
{{- if $redisPw }}
- name: AIRFLOW_HA_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      {{- $redisPw | nindent 6 }}
{{- end }}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  value: {{ include "airflow-ha.dbUrl" (dict "root" . "scheme" "mysql+mysqldb" "password" "$(AIRFLOW_HA_DB_PASSWORD)" "query" (include "airflow-ha.dbQuery" (dict "root" . "which" (ternary "connect" "timeouts" (eq $migration true))))) | quote }}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC
  value: {{ include "airflow-ha.dbUrl" (dict "root" . "scheme" "mysql+aiomysql" "password" "$(AIRFLOW_HA_DB_PASSWORD)" "query" (include "airflow-ha.dbQuery" (dict "root" . "which" "connect" "async" true))) | quote }}
- name: AIRFLOW__CELERY__RESULT_BACKEND
  value: {{ include "airflow-ha.dbUrl" (dict "root" . "scheme" "db+mysql" "password" "$(AIRFLOW_HA_DB_PASSWORD)" "query" (include "airflow-ha.dbQuery" (dict "root" . "which" "timeouts"))) | quote }}
{{- if include "airflow-ha.db.tls" . }}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS_ASYNC
  value: airflow_ha.db_tls.ASYNC_CONNECT_ARGS
- name: AIRFLOW_HA_DB_TLS_CA
  value: {{ ternary (printf "%s/ca.crt" (include "airflow-ha.db.caDir" .)) "" (ne (include "airflow-ha.db.caMounted" .) "") | quote }}
- name: AIRFLOW_HA_DB_TLS_CHECK_HOSTNAME
  value: {{ .Values.database.external.tls.checkHostname | toString | quote }}
{{- end }}
- name: AIRFLOW__CELERY__BROKER_URL
  value: {{ include "airflow-ha.brokerUrl" (dict "root" . "password" (ternary "$(AIRFLOW_HA_REDIS_PASSWORD)" "" (ne $redisPw ""))) | quote }}
- name: AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS
  value: {{ .Values.broker.celeryConfigOptions | quote }}
- name: AIRFLOW__CELERY__WORKER_CONCURRENCY
  value: {{ $concurrency | quote }}
- name: AIRFLOW__CORE__FERNET_KEY
  valueFrom:
    secretKeyRef:
      {{- include "airflow-ha.secretKeyRef" (dict "root" . "secret" "fernetKey") | nindent 6 }}
- name: AIRFLOW__API_AUTH__JWT_SECRET
  valueFrom:
    secretKeyRef:
      {{- include "airflow-ha.secretKeyRef" (dict "root" . "secret" "jwtSecret") | nindent 6 }}
- name: AIRFLOW__API__SECRET_KEY
  valueFrom:
    secretKeyRef:
      {{- include "airflow-ha.secretKeyRef" (dict "root" . "secret" "apiSecretKey") | nindent 6 }}
- name: AIRFLOW__CORE__EXECUTION_API_SERVER_URL
  value: {{ printf "http://%s-api-server:%d/execution/" (include "airflow-ha.fullname" .) (int .Values.apiServer.service.port) | quote }}
- name: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS
  value: {{ .Values.auth.users | quote }}
- name: AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE
  value: {{ .Values.auth.passwordsFile | quote }}
- name: AIRFLOW_HA_SENSOR_SHARDS
  value: {{ .Values.sensorShards.count | quote }}
- name: AIRFLOW_HA_VIRTUAL_SHARDS
  value: {{ .Values.sensorShards.virtualShards | quote }}
- name: AIRFLOW_HA_SENSOR_HISTORY_DAYS
  value: {{ .Values.sensorShards.historyDays | quote }}
- name: AIRFLOW_HA_MARKER_DIR
  value: {{ .Values.markers.mountPath | quote }}
{{- if .Values.metrics.enabled }}
{{- /* Airflow's StatsD client (and airflow_ha.metrics through it) to <release>-statsd; config.metrics wins */}}
{{- $set := .Values.config.metrics | default dict }}
{{- $statsd := dict "statsd_on" "True" "statsd_host" (printf "%s-statsd" (include "airflow-ha.fullname" .)) "statsd_port" (toString (int .Values.metrics.statsdPort)) "statsd_prefix" "airflow" }}
{{- range $key := list "statsd_on" "statsd_host" "statsd_port" "statsd_prefix" }}
{{- if not (hasKey $set $key) }}
- name: {{ printf "AIRFLOW__METRICS__%s" (upper $key) }}
  value: {{ get $statsd $key | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- include "airflow-ha.remoteLogsEnv" . }}
{{- if not (hasKey (.Values.config.dag_processor | default dict) "dag_bundle_config_list") }}
- name: AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST
  value: {{ include "airflow-ha.dagBundles" . | quote }}
{{- end }}
{{- with .Values.dags.git }}
{{- if .enabled }}
- name: AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH
  value: {{ .storagePath | quote }}
{{- if .credentialsSecret.name }}
- name: AIRFLOW_HA_GIT_USERNAME
  valueFrom:
    secretKeyRef: {name: {{ .credentialsSecret.name | quote }}, key: {{ .credentialsSecret.usernameKey | quote }}}
- name: AIRFLOW_HA_GIT_TOKEN
  valueFrom:
    secretKeyRef: {name: {{ .credentialsSecret.name | quote }}, key: {{ .credentialsSecret.tokenKey | quote }}}
{{- end }}
- name: AIRFLOW_CONN_AIRFLOW_HA_GIT
  value: {{ include "airflow-ha.gitConnection" $root | quote }}
{{- end }}
{{- end }}
{{- range $section, $options := .Values.config }}
{{- range $key, $value := $options }}
{{- if not (and $hostnameCallable (eq $section "core") (eq $key "hostname_callable")) }}
- name: {{ printf "AIRFLOW__%s__%s" (upper $section) (upper $key) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- with $hostnameCallable }}
- name: AIRFLOW__CORE__HOSTNAME_CALLABLE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.env }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- end }}

{{/* The port of every triggerer's log server ([logging] trigger_log_server_port, one value for the
     triggerers that serve and the api-server that reads). */}}
{{- define "airflow-ha.triggerLogPort" -}}
{{- $port := dig "logging" "trigger_log_server_port" 8794 (.Values.config | default dict) | toString }}
{{- if not (regexMatch "^[1-9][0-9]{0,4}$" $port) }}
{{- fail (printf "config.logging.trigger_log_server_port must be a port number (1-65535), not %q" $port) }}
{{- end }}
{{- if gt (int $port) 65535 }}
{{- fail (printf "config.logging.trigger_log_server_port must be a port number (1-65535), not %q" $port) }}
{{- end }}
{{- $port }}
{{- end }}

{{/* The DAG bundles of dags.* as Airflow's [dag_processor] dag_bundle_config_list (JSON). */}}
{{- define "airflow-ha.dagBundles" -}}
{{- $bundles := list }}
{{- if .Values.dags.imageBundle }}
{{- $bundles = append $bundles (dict "name" "dags-folder" "classpath" "airflow.dag_processing.bundles.local.LocalDagBundle" "kwargs" dict) }}
{{- end }}
{{- with .Values.dags.git }}
{{- if .enabled }}
{{- $kwargs := dict "tracking_ref" .ref "repo_url" .repoUrl "git_conn_id" "airflow_ha_git" "refresh_interval" (int .refreshIntervalSeconds) }}
{{- if .subdir }}{{ $_ := set $kwargs "subdir" .subdir }}{{ end }}
{{- $bundles = append $bundles (dict "name" .bundleName "classpath" "airflow.providers.git.bundles.git.GitDagBundle" "kwargs" $kwargs) }}
{{- end }}
{{- end }}
{{- if not $bundles }}
{{- fail "dags.imageBundle is false and dags.git.enabled is not true: Airflow needs at least one DAG bundle" }}
{{- end }}
{{- if and .Values.dags.imageBundle .Values.dags.git.enabled (eq .Values.dags.git.bundleName "dags-folder") }}
{{- fail "dags.git.bundleName \"dags-folder\" is the image's bundle (dags.imageBundle): choose another name" }}
{{- end }}
{{- toJson $bundles }}
{{- end }}

{{/* The git bundle's Airflow connection (JSON, AIRFLOW_CONN_AIRFLOW_HA_GIT): the repository, the user and
     token as $(VAR) references the kubelet expands from the credentials Secret (checked JSON-safe by
     wait-for-migrations), and the ssh key and known_hosts files mounted from the ssh Secret. */}}
{{- define "airflow-ha.gitConnection" -}}
{{- $git := .Values.dags.git }}
{{- $conn := dict "conn_type" "git" "host" $git.repoUrl }}
{{- if $git.credentialsSecret.name }}
{{- $_ := set $conn "login" "$(AIRFLOW_HA_GIT_USERNAME)" }}
{{- $_ := set $conn "password" "$(AIRFLOW_HA_GIT_TOKEN)" }}
{{- end }}
{{- if $git.sshKeySecret.name }}
{{- $extra := dict "key_file" (printf "%s/%s" (include "airflow-ha.gitSshDir" .) "key") "strict_host_key_checking" $git.sshStrictHostKeyChecking }}
{{- if $git.sshKeySecret.knownHostsKey }}
{{- $_ := set $extra "known_hosts_file" (printf "%s/%s" (include "airflow-ha.gitSshDir" .) "known_hosts") }}
{{- end }}
{{- $_ := set $conn "extra" $extra }}
{{- end }}
{{- toJson $conn }}
{{- end }}

{{/* "true" when the release runs its own log store (remote logs without an external store). */}}
{{- define "airflow-ha.logStore.enabled" -}}
{{- if and .Values.remoteLogs.enabled (not .Values.remoteLogs.external.enabled) }}true{{ end -}}
{{- end }}

{{/* The ports the log store's pods talk to each other on, by name (masters, volume servers, filers; HTTP
     and gRPC): the container ports, the headless Service and the NetworkPolicy. YAML, for fromYaml. */}}
{{- define "airflow-ha.logStore.peerPorts" -}}
master: 9333
master-grpc: 19333
volume: 8080
volume-grpc: 18080
filer: 8888
filer-grpc: 18888
{{- end }}

{{/* The S3 endpoint of the release's log store. */}}
{{- define "airflow-ha.logStore.endpoint" -}}
{{- printf "http://%s:%d" (include "airflow-ha.logStore.fullname" .) (int .Values.logStore.s3Port) -}}
{{- end }}

{{/* The log store's connection (JSON, AIRFLOW_CONN_<remoteLogs.connId>): the key pair as $(VAR) references
     the kubelet expands (checked JSON-safe by wait-for-migrations), path-style addressing (the Service name
     is no bucket domain), and client timeouts that fail over to another pod within seconds instead of
     botocore's 60 s connect timeout on a pod whose node is gone. */}}
{{- define "airflow-ha.logStoreConnection" -}}
{{- $config := dict "connect_timeout" 3 "read_timeout" 20 "retries" (dict "mode" "standard" "max_attempts" 10) "s3" (dict "addressing_style" "path") }}
{{- $extra := dict "endpoint_url" (include "airflow-ha.logStore.endpoint" .) "region_name" "us-east-1" "config_kwargs" $config }}
{{- toJson (dict "conn_type" "aws" "login" "$(AIRFLOW_HA_LOG_STORE_ACCESS_KEY)" "password" "$(AIRFLOW_HA_LOG_STORE_SECRET_KEY)" "extra" $extra) }}
{{- end }}

{{/* The log store's key pair as env (Airflow pods and the store's own). */}}
{{- define "airflow-ha.logStoreKeysEnv" -}}
- name: AIRFLOW_HA_LOG_STORE_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      {{- include "airflow-ha.secretKeyRef" (dict "root" . "secret" "logStoreAccessKey") | nindent 6 }}
- name: AIRFLOW_HA_LOG_STORE_SECRET_KEY
  valueFrom:
    secretKeyRef:
      {{- include "airflow-ha.secretKeyRef" (dict "root" . "secret" "logStoreSecretKey") | nindent 6 }}
{{- end }}

{{/* Airflow's remote logging (remoteLogs): [logging] remote_* (config.logging wins) and the connection. */}}
{{- define "airflow-ha.remoteLogsEnv" -}}
{{- $r := .Values.remoteLogs }}
{{- if $r.enabled }}
{{- if not (regexMatch "^[A-Za-z0-9_]+$" $r.connId) }}
{{- fail (printf "remoteLogs.connId must be letters, digits and _ (it names the env var AIRFLOW_CONN_<ID>), not %q" $r.connId) }}
{{- end }}
{{- $set := .Values.config.logging | default dict }}
{{- $logging := dict "remote_logging" "True" "remote_base_log_folder" $r.baseFolder "remote_log_conn_id" $r.connId }}
{{- range $key := list "remote_logging" "remote_base_log_folder" "remote_log_conn_id" }}
{{- if not (hasKey $set $key) }}
- name: {{ printf "AIRFLOW__LOGGING__%s" (upper $key) }}
  value: {{ get $logging $key | quote }}
{{- end }}
{{- end }}
{{- if $r.external.enabled }}
{{- with $r.external.connectionSecret }}
{{- if .name }}
- name: {{ printf "AIRFLOW_CONN_%s" (upper $r.connId) }}
  valueFrom:
    secretKeyRef: {name: {{ .name | quote }}, key: {{ .key | quote }}}
{{- end }}
{{- end }}
{{- else }}
{{- include "airflow-ha.logStoreKeysEnv" . | nindent 0 }}
- name: {{ printf "AIRFLOW_CONN_%s" (upper $r.connId) }}
  value: {{ include "airflow-ha.logStoreConnection" . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Where the git bundle's ssh key (and known_hosts) are mounted. */}}
{{- define "airflow-ha.gitSshDir" -}}
/opt/airflow/secrets/git-ssh
{{- end }}

{{/* Image of the Airflow containers. */}}
{{- define "airflow-ha.airflowImage" -}}
image: {{ printf "%s:%s" .Values.images.airflow.repository (toString (.Values.images.airflow.tag | default .Chart.AppVersion)) | quote }}
imagePullPolicy: {{ .Values.images.airflow.pullPolicy }}
{{- end }}

{{/* Volume mounts of every Airflow container. */}}
{{/* The simple auth manager opens its passwords file with "a+": it lives in a writable emptyDir, copied
     from the Secret by the auth-file init container. */}}
{{- define "airflow-ha.airflowVolumeMounts" -}}
- name: auth
  mountPath: {{ dir .Values.auth.passwordsFile }}
{{- if .Values.markers.enabled }}
- name: markers
  mountPath: {{ .Values.markers.mountPath }}
{{- end }}
{{- if include "airflow-ha.broker.caMounted" . }}
- name: broker-ca
  mountPath: {{ include "airflow-ha.broker.caDir" . }}
  readOnly: true
{{- end }}
{{- if include "airflow-ha.db.caMounted" . }}
- name: db-ca
  mountPath: {{ include "airflow-ha.db.caDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.dags.git.enabled }}
- name: dag-bundles
  mountPath: {{ .Values.dags.git.storagePath }}
{{- if .Values.dags.git.sshKeySecret.name }}
- name: git-ssh
  mountPath: {{ include "airflow-ha.gitSshDir" . }}
  readOnly: true
{{- end }}
{{- end }}
{{- with .Values.volumeMounts }}
{{ tpl (toYaml .) $ }}
{{- end }}
{{- end }}

{{/* Volumes of every Airflow pod. */}}
{{- define "airflow-ha.airflowVolumes" -}}
- name: auth
  emptyDir:
    sizeLimit: 1Mi
- name: auth-secret
  secret:
    {{- $admin := include "airflow-ha.secretKeyRef" (dict "root" . "secret" "adminPasswords") | fromYaml }}
    secretName: {{ $admin.name }}
    items:
      - key: {{ $admin.key }}
        path: {{ base .Values.auth.passwordsFile }}
{{- if .Values.markers.enabled }}
- name: markers
  {{- if .Values.markers.existingClaim }}
  persistentVolumeClaim:
    claimName: {{ .Values.markers.existingClaim }}
  {{- else }}
  hostPath:
    path: {{ .Values.markers.hostPath }}
    type: DirectoryOrCreate
  {{- end }}
{{- end }}
{{- if include "airflow-ha.broker.caMounted" . }}
- name: broker-ca
  secret:
    secretName: {{ .Values.broker.external.tls.caSecret.name }}
    items:
      - key: {{ .Values.broker.external.tls.caSecret.key }}
        path: ca.crt
{{- end }}
{{- if include "airflow-ha.db.caMounted" . }}
- name: db-ca
  secret:
    secretName: {{ .Values.database.external.tls.caSecret.name }}
    items:
      - key: {{ .Values.database.external.tls.caSecret.key }}
        path: ca.crt
{{- end }}
{{- with .Values.dags.git }}
{{- if .enabled }}
- name: dag-bundles
  emptyDir:
    sizeLimit: {{ .storageSizeLimit }}
{{- if .sshKeySecret.name }}
- name: git-ssh
  secret:
    secretName: {{ .sshKeySecret.name }}
    # group-readable for the Airflow uid's group 0 (owned by root: ssh accepts a key it does not own)
    defaultMode: 0440
    items:
      - key: {{ .sshKeySecret.key }}
        path: key
      {{- if .sshKeySecret.knownHostsKey }}
      - key: {{ .sshKeySecret.knownHostsKey }}
        path: known_hosts
      {{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.volumes }}
{{ tpl (toYaml .) $ }}
{{- end }}
{{- end }}

{{/* Init container of the workers (they write markers): the marker root owned by the Airflow uid, mode
     2775, with a default ACL giving that uid and group rwx, so a day directory anyone creates below it (a
     person as root on the node, an upstream system) stays writable for every job. Root with CAP_CHOWN and
     CAP_FOWNER only; a step the volume refuses (no ACLs, root-squashed NFS) is logged, not fatal: the job
     writing into an unwritable directory then fails with the cause (src/airflow_ha/sensors/markers.py). */}}
{{- define "airflow-ha.markersPermissionsInit" -}}
{{- if and .Values.markers.enabled .Values.markers.setPermissions }}
{{- $uid := int .Values.airflowPodSecurityContext.runAsUser }}
{{- $gid := int (default 0 .Values.airflowPodSecurityContext.runAsGroup) }}
- name: markers-permissions
  {{- include "airflow-ha.airflowImage" . | nindent 2 }}
  command: ["sh", "-c"]
  args:
    - |
      dir={{ .Values.markers.mountPath | quote }}
      chown {{ $uid }}:{{ $gid }} "$dir" && chmod 2775 "$dir" || echo "markers-permissions: could not chown/chmod $dir" >&2
      setfacl -m u:{{ $uid }}:rwx,g:{{ $gid }}:rwx,d:u:{{ $uid }}:rwx,d:g:{{ $gid }}:rwx "$dir" \
        || echo "markers-permissions: no default ACL on $dir: directories created there by root or another uid are not writable for Airflow" >&2
      getfacl -p "$dir" 2>/dev/null || ls -ld "$dir"
  volumeMounts:
    - name: markers
      mountPath: {{ .Values.markers.mountPath }}
  securityContext:
    runAsUser: 0
    runAsGroup: 0
    runAsNonRoot: false
    allowPrivilegeEscalation: false
    capabilities:
      drop: [ALL]
      add: [CHOWN, FOWNER]
  resources:
    {{- toYaml .Values.waitForMigrations.resources | nindent 4 }}
{{- end }}
{{- end }}

{{/* Init container copying the admin passwords file from the Secret into the writable auth volume. */}}
{{- define "airflow-ha.authFileInit" -}}
- name: auth-file
  {{- include "airflow-ha.airflowImage" . | nindent 2 }}
  args: ["cp", "/opt/airflow/auth-secret/{{ base .Values.auth.passwordsFile }}", {{ .Values.auth.passwordsFile | quote }}]
  volumeMounts:
    {{- include "airflow-ha.airflowVolumeMounts" . | nindent 4 }}
    - name: auth-secret
      mountPath: /opt/airflow/auth-secret
      readOnly: true
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.waitForMigrations.resources | nindent 4 }}
{{- end }}

{{/* The init container of every Airflow pod: wait until the schema is current. */}}
{{- define "airflow-ha.waitForMigrations" -}}
{{- if .Values.waitForMigrations.enabled }}
- name: wait-for-migrations
  {{- include "airflow-ha.airflowImage" . | nindent 2 }}
  {{- /* Not `airflow db check-migrations`: it polls inside one transaction, whose metadata lock on MySQL
         stops the migration Job's CREATE TABLE for as long as any pod waits (src/airflow_ha/migrations.py). */}}
  args: ["airflow-ha", "wait-for-migrations", "--timeout", "{{ int .Values.waitForMigrations.timeoutSeconds }}"]
  env:
    {{- include "airflow-ha.env" (dict "root" .) | nindent 4 }}
  volumeMounts:
    {{- include "airflow-ha.airflowVolumeMounts" . | nindent 4 }}
  securityContext:
    {{- toYaml .Values.containerSecurityContext | nindent 4 }}
  resources:
    {{- toYaml .Values.waitForMigrations.resources | nindent 4 }}
{{- end }}
{{- end }}

{{/* Pod anti-affinity of a component: (dict "root" $ "component" NAME "mode" preferred|required|none "affinity" OBJ
     ["extraSelector" LABELS]); with extraSelector the pods avoid only their own set's (a worker group's). */}}
{{- define "airflow-ha.affinity" -}}
{{- if .affinity }}
affinity:
  {{- toYaml .affinity | nindent 2 }}
{{- else if eq .mode "required" }}
affinity:
  podAntiAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      - topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "airflow-ha.selectorLabels" . | nindent 12 }}
{{- else if eq .mode "preferred" }}
affinity:
  podAntiAffinity:
    preferredDuringSchedulingIgnoredDuringExecution:
      - weight: 100
        podAffinityTerm:
          topologyKey: kubernetes.io/hostname
          labelSelector:
            matchLabels:
              {{- include "airflow-ha.selectorLabels" . | nindent 14 }}
{{- end }}
{{- end }}

{{/* nodeSelector/tolerations/affinity/pull secrets of a pod: (dict "root" $ "component" NAME "values" COMPONENT_VALUES) */}}
{{- define "airflow-ha.scheduling" -}}
{{- $ns := merge (deepCopy (default dict .values.nodeSelector)) (default dict .root.Values.nodeSelector) }}
{{- with $ns }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $tol := concat (default list .root.Values.tolerations) (default list .values.tolerations) }}
{{- with $tol }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- include "airflow-ha.affinity" (dict "root" .root "component" .component "mode" (default "none" .values.podAntiAffinity) "affinity" .values.affinity "extraSelector" .extraSelector) }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- tpl (toYaml .) $.root | nindent 2 }}
{{- end }}
{{- with (default .root.Values.priorityClassName .values.priorityClassName) }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The pod spec fields shared by Airflow pods (everything but containers):
     (dict "root" $ "component" NAME "values" COMPONENT_VALUES) */}}
{{- define "airflow-ha.airflowPodCommon" -}}
{{- /* "serviceAccount": a component's own account whose token it needs (the worker watcher); others get none */}}
serviceAccountName: {{ default (include "airflow-ha.serviceAccountName" .root) .serviceAccount }}
automountServiceAccountToken: {{ not (empty .serviceAccount) }}
securityContext:
  {{- toYaml .root.Values.airflowPodSecurityContext | nindent 2 }}
{{- if .values.terminationGracePeriodSeconds }}
terminationGracePeriodSeconds: {{ int .values.terminationGracePeriodSeconds }}
{{- end }}
{{- /* Task hostnames are pod names: resolve <release>-worker[-<group>]-N through its set's headless Service. */}}
dnsConfig:
  searches:
    {{- range $set := include "airflow-ha.workerSets" .root | fromYamlArray }}
    - {{ printf "%s.%s.svc.cluster.local" $set.fullname $.root.Release.Namespace }}
    {{- end }}
{{- include "airflow-ha.scheduling" . }}
initContainers:
  {{- if eq .component "worker" }}
  {{- include "airflow-ha.markersPermissionsInit" .root | nindent 2 }}
  {{- end }}
  {{- include "airflow-ha.authFileInit" .root | nindent 2 }}
  {{- if .root.Values.waitForMigrations.enabled }}
  {{- include "airflow-ha.waitForMigrations" .root | trim | nindent 2 }}
  {{- end }}
  {{- with .values.extraInitContainers }}
  {{- tpl (toYaml .) $.root | nindent 2 }}
  {{- end }}
volumes:
  {{- include "airflow-ha.airflowVolumes" .root | nindent 2 }}
  {{- with .values.extraVolumes }}
  {{- tpl (toYaml .) $.root | nindent 2 }}
  {{- end }}
{{- end }}

{{/* The component's extraContainers, after its main container: (dict "root" $ "values" COMPONENT_VALUES) */}}
{{- define "airflow-ha.extraContainers" -}}
{{- with .values.extraContainers }}
{{- tpl (toYaml .) $.root }}
{{- end }}
{{- end }}

{{/* Container fields shared by Airflow containers (image, env, mounts, security, resources):
     (dict "root" $ "values" COMPONENT_VALUES ["extraEnv" LIST]); extraEnv comes after the common env. */}}
{{- define "airflow-ha.airflowContainerCommon" -}}
{{ include "airflow-ha.airflowImage" .root }}
env:
  {{- include "airflow-ha.env" (dict "root" .root "migration" (eq .component "migrate-db") "concurrency" (and (eq .component "worker") .values.concurrency) "hostnameCallable" .hostnameCallable) | nindent 2 }}
  {{- with .extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .root.Values.envFrom }}
envFrom:
  {{- tpl (toYaml .) $.root | nindent 2 }}
{{- end }}
volumeMounts:
  {{- include "airflow-ha.airflowVolumeMounts" .root | nindent 2 }}
  {{- with .values.extraVolumeMounts }}
  {{- tpl (toYaml .) $.root | nindent 2 }}
  {{- end }}
securityContext:
  {{- toYaml .root.Values.containerSecurityContext | nindent 2 }}
resources:
  {{- toYaml (default dict .values.resources) | nindent 2 }}
{{- end }}

{{/* Pod template metadata of a component: (dict "root" $ "component" NAME) */}}
{{- define "airflow-ha.podMetadata" -}}
metadata:
  labels:
    {{- include "airflow-ha.podLabels" . | nindent 4 }}
  annotations:
    {{- /* Roll the pods when the configuration changes. */}}
    checksum/config: {{ toYaml .root.Values.config | sha256sum | trunc 16 }}
    {{- /* The connection URLs follow the topology (every Redis pod, the DB host): roll when it changes. */}}
    checksum/topology: {{ printf "%s|%s:%s/%s@%s" (ternary (include "airflow-ha.broker.seeds" .root) (include "airflow-ha.redis.hosts" .root) (ne (include "airflow-ha.broker.external" .root) "")) (include "airflow-ha.db.host" .root) (include "airflow-ha.db.port" .root) (include "airflow-ha.db.name" .root) (include "airflow-ha.db.user" .root) | sha256sum | trunc 16 }}
    {{- with .root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}

{{/* A Job's annotations: the Helm hook (post-install/post-upgrade at "weight") when "hook", and the user's
     "extra" (e.g. Argo CD's argocd.argoproj.io/hook for a plain Job): (dict "hook" BOOL "weight" N "extra" MAP) */}}
{{- define "airflow-ha.jobAnnotations" -}}
{{- if or .hook .extra -}}
annotations:
  {{- if .hook }}
  helm.sh/hook: post-install,post-upgrade
  helm.sh/hook-weight: {{ .weight | quote }}
  helm.sh/hook-delete-policy: before-hook-creation
  {{- end }}
  {{- with .extra }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}
{{- end }}

{{/* ttlSecondsAfterFinished of a plain Job (its values, useHelmHooks false): its pod template is immutable,
     so a finished one must be gone before an upgrade that changes it (the image) can create it again. A
     hook is replaced on each upgrade anyway (before-hook-creation). */}}
{{- define "airflow-ha.jobTtl" -}}
{{- if and (not .useHelmHooks) (not (kindIs "invalid" .ttlSecondsAfterFinished)) -}}
ttlSecondsAfterFinished: {{ int .ttlSecondsAfterFinished }}
{{- end -}}
{{- end }}

{{/* `airflow jobs check` liveness probe: (dict "type" "SchedulerJob" "probe" PROBE_VALUES) */}}
{{- define "airflow-ha.jobsCheckProbe" -}}
livenessProbe:
  exec:
    command: ["airflow", "jobs", "check", "--job-type", {{ .type | quote }}, "--local"]
  initialDelaySeconds: {{ int (default 120 .probe.initialDelaySeconds) }}
  periodSeconds: {{ int (default 60 .probe.periodSeconds) }}
  timeoutSeconds: {{ int (default 50 .probe.timeoutSeconds) }}
  failureThreshold: {{ int (default 5 .probe.failureThreshold) }}
{{- end }}

{{/* A PodDisruptionBudget for one component's pods: dict "root" . "component" C "name" NAME "pdb" VALUES,
     VALUES = {enabled, minAvailable | maxUnavailable}. `kubectl drain` evicts them one at a time. */}}
{{- define "airflow-ha.pdb" -}}
{{- if .pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ .name }}
  labels:
    {{- include "airflow-ha.labels" . | nindent 4 }}
spec:
  {{- if hasKey .pdb "minAvailable" }}
  minAvailable: {{ int .pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ int (default 1 .pdb.maxUnavailable) }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "airflow-ha.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}
