{{/* ------------------------------------------------------------------------------------------------
mysql.mode groupReplication: names and addresses of the group's members and its proxy.
------------------------------------------------------------------------------------------------- */}}

{{/* true when the release runs its database as a Group Replication group. */}}
{{- define "airflow-ha.mysqlGroup.enabled" -}}
{{- if and (not .Values.database.external.enabled) (eq .Values.mysql.mode "groupReplication") -}}true{{- end -}}
{{- end }}

{{/* The members' StatefulSet and headless Service. */}}
{{- define "airflow-ha.mysqlGroup.fullname" -}}{{ include "airflow-ha.mysql.fullname" . }}-gr{{- end }}
{{/* HAProxy's Deployment and Service (Airflow's database host). */}}
{{- define "airflow-ha.mysqlGroup.proxy" -}}{{ include "airflow-ha.mysql.fullname" . }}-proxy{{- end }}

{{/* group_replication_group_name: the value, or a UUID derived from namespace/release (stable across upgrades). */}}
{{- define "airflow-ha.mysqlGroup.groupName" -}}
{{- if .Values.mysql.groupReplication.groupName -}}
{{- .Values.mysql.groupReplication.groupName | lower -}}
{{- else -}}
{{- $h := printf "airflow-ha-mysql-group/%s/%s" .Release.Namespace (include "airflow-ha.fullname" .) | sha256sum -}}
{{- printf "%s-%s-%s-%s-%s" (substr 0 8 $h) (substr 8 12 $h) (substr 12 16 $h) (substr 16 20 $h) (substr 20 32 $h) -}}
{{- end -}}
{{- end }}

{{/* The stable DNS name of member N: (dict "root" $ "index" N). */}}
{{- define "airflow-ha.mysqlGroup.host" -}}
{{- $gr := include "airflow-ha.mysqlGroup.fullname" .root -}}
{{- printf "%s-%d.%s.%s.svc.cluster.local" $gr (int .index) $gr .root.Release.Namespace -}}
{{- end }}

{{/* Every member's host:PORT, comma separated: (dict "root" $ "port" PORT). */}}
{{- define "airflow-ha.mysqlGroup.addresses" -}}
{{- $out := list -}}
{{- range $i := until (int .root.Values.mysql.groupReplication.members) -}}
{{- $out = append $out (printf "%s:%d" (include "airflow-ha.mysqlGroup.host" (dict "root" $.root "index" $i)) (int $.port)) -}}
{{- end -}}
{{- join "," $out -}}
{{- end }}
