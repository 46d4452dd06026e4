{{/* Base of every object name: the release name unless overridden. */}}
{{- define "mao.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mao.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The jobs namespace: ArchiveJobs, token Secrets and job pods. */}}
{{- define "mao.jobsNamespace" -}}
{{- default (printf "%s-jobs" .Release.Namespace) .Values.jobs.namespace -}}
{{- end -}}

{{- define "mao.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "mao.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: moodle-archive-operator
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include with (list . "gateway"). */}}
{{- define "mao.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "mao.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "mao.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mao.jobImage" -}}
{{- printf "%s:%s" .Values.jobs.image.repository (default .Chart.AppVersion .Values.jobs.image.tag) -}}
{{- end -}}

{{- define "mao.gatewayServiceAccount" -}}{{ include "mao.fullname" . }}-gateway{{- end -}}
{{- define "mao.operatorServiceAccount" -}}{{ include "mao.fullname" . }}-operator{{- end -}}

{{/* Container security context of the gateway and operator (restricted profile). */}}
{{- define "mao.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "mao.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment both control-plane processes share. */}}
{{- define "mao.commonEnv" -}}
- name: MAO_JOBS_NAMESPACE
  value: {{ include "mao.jobsNamespace" . | quote }}
- name: MAO_MAX_PARALLEL_JOBS
  value: {{ .Values.maxParallelJobs | quote }}
- name: MAO_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
{{- if .Values.kubernetesApi.host }}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.kubernetesApi.host | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ .Values.kubernetesApi.port | quote }}
{{- end }}
{{- end -}}

{{/* Address a probe on a host-network pod uses: the node's loopback, where it listens. */}}
{{- define "mao.probeHost" -}}
{{- if . }}
host: 127.0.0.1
{{- end }}
{{- end -}}
