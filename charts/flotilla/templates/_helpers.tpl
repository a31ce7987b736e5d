{{- define "flotilla.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of the umbrella's own objects; $component names the part (ingress, postgresql...). */}}
{{- define "flotilla.labels" -}}
{{- $root := index . 0 -}}
helm.sh/chart: {{ include "flotilla.chart" $root }}
{{ include "flotilla.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
{{- end }}

{{- define "flotilla.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ index . 1 }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
{{- end }}

{{/* The gateway's Service name, as charts/service names it. */}}
{{- define "flotilla.gatewayFullname" -}}
{{- $gateway := .Values.gateway | default dict -}}
{{- if $gateway.fullnameOverride }}
{{- $gateway.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (default "gateway" $gateway.nameOverride) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
Name of a dev server's StatefulSet and Service: (list $ "postgresql"). At most 52
characters for any release name (Helm allows 53), because a StatefulSet's pods carry the
label controller-revision-hash=<name>-<10 characters>. values-dev.yaml's URLs use it too.
*/}}
{{- define "flotilla.devServerName" -}}
{{- $root := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- printf "%s-%s" ($root.Release.Name | trunc (int (sub 51 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/* Hardened container securityContext of the dev servers (their images use UID 999). */}}
{{- define "flotilla.devSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 999
runAsGroup: 999
capabilities:
  drop:
    - ALL
{{- end }}

{{- define "flotilla.devPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: 999
runAsGroup: 999
fsGroup: 999
seccompProfile:
  type: RuntimeDefault
{{- end }}
