{{- define "operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "operator.name" .) .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "operator.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels never change across upgrades; labels may. */}}
{{- define "operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "operator.labels" -}}
helm.sh/chart: {{ include "operator.chart" . }}
{{ include "operator.selectorLabels" . }}
app.kubernetes.io/version: {{ include "operator.versionLabel" . | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The fullname with a suffix, within the 63 characters a Service name may have: (list $ "metrics"). */}}
{{- define "operator.suffixedName" -}}
{{- $root := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- printf "%s-%s" (include "operator.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/* Image tag: the value, or the chart's appVersion, without "@<digest>" (skaffold). */}}
{{- define "operator.imageTag" -}}
{{- regexReplaceAll "@.*$" (default .Chart.AppVersion .Values.image.tag | toString) "" }}
{{- end }}

{{/* The image tag as a label value: only [-A-Za-z0-9_.], at most 63, alphanumeric ends. */}}
{{- define "operator.versionLabel" -}}
{{- $tag := regexReplaceAll "[^-A-Za-z0-9_.]" (include "operator.imageTag" .) "_" | trunc 63 }}
{{- regexReplaceAll "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$" $tag "" }}
{{- end }}

{{- define "operator.image" -}}
{{- $ref := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $ref = printf "%s/%s" . $ref }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $ref .Values.image.digest }}
{{- else }}
{{- /* skaffold sets "<tag>@<digest>"; a build without digest leaves a bare "@". */}}
{{- printf "%s:%s" $ref (default .Chart.AppVersion .Values.image.tag | toString | trimSuffix "@") }}
{{- end }}
{{- end }}
