{{/*
Naming. The service name (.Values.serviceName) is the chart's "name": one chart, five
services. Object names are "<release>-<name>" (no shortening tricks), so other charts
and the gateway can compute a sibling's address from the release name alone.
*/}}
{{- define "service.name" -}}
{{- default .Values.serviceName .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name (include "service.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* The fullname another Flotilla service of this release gets: (list $ "auth"). */}}
{{- define "service.siblingFullname" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" $root.Release.Name (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The label that lets a pod past the NetworkPolicy (the `helm test` pod has it). The
fullname is the value, not part of the key: a key's name part must stay within 63
characters, and "<fullname>-client" does not for long release names.
*/}}
{{- define "service.clientLabel" -}}
flotilla.dev/client-of: {{ include "service.fullname" . }}
{{- end }}

{{- define "service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every setting's environment variable: TASKS_ for serviceName tasks. */}}
{{- define "service.envPrefix" -}}
{{- printf "%s_" (.Values.serviceName | upper | replace "-" "_") }}
{{- end }}

{{/*
Selector labels never change across upgrades (a Deployment's selector is immutable);
everything else may.
*/}}
{{- define "service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "service.labels" -}}
helm.sh/chart: {{ include "service.chart" . }}
{{ include "service.selectorLabels" . }}
app.kubernetes.io/version: {{ include "service.versionLabel" . | quote }}
app.kubernetes.io/component: {{ ternary "gateway" "backend" (eq .Values.serviceName "gateway") }}
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image tag: the value, or the chart's appVersion. May carry "@sha256:..." (skaffold). */}}
{{- define "service.imageTag" -}}
{{- regexReplaceAll "@.*$" (default .Chart.AppVersion .Values.image.tag | toString) "" }}
{{- end }}

{{/*
The image tag as a label value: no "@digest", only [-A-Za-z0-9_.], at most 63 characters,
alphanumeric at both ends (empty when the tag is only a digest).
*/}}
{{- define "service.versionLabel" -}}
{{- $tag := regexReplaceAll "[^-A-Za-z0-9_.]" (include "service.imageTag" .) "_" | trunc 63 }}
{{- regexReplaceAll "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$" $tag "" }}
{{- end }}

{{- define "service.image" -}}
{{- $registry := .Values.image.registry | default ((.Values.global).imageRegistry) | default "" }}
{{- $repository := .Values.image.repository | default (printf "flotilla-%s" .Values.serviceName) }}
{{- /* skaffold sets "<tag>@<digest>"; a build without digest leaves a bare "@". */}}
{{- $tag := default .Chart.AppVersion .Values.image.tag | toString | trimSuffix "@" }}
{{- $ref := ternary (printf "%s/%s" $registry $repository) $repository (ne $registry "") }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $ref .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $ref $tag }}
{{- end }}
{{- end }}

{{/* Name of the ServiceSpec (and so of the Secrets the operator writes for it). */}}
{{- define "service.serviceSpecName" -}}
{{- default .Values.serviceName .Values.serviceSpec.name }}
{{- end }}

{{/* Whether the chart keeps its own Secret for plain URLs given in values. */}}
{{- define "service.ownSecret" -}}
{{- if or (and .Values.database.enabled .Values.database.url) (and .Values.redis.enabled .Values.redis.url) }}true{{ end }}
{{- end }}

{{/* Secret and key holding the database URL: (list "database" "DATABASE_URL" $) */}}
{{- define "service.urlSecretRef" -}}
{{- $part := index . 0 }}
{{- $root := index . 2 }}
{{- $cfg := index $root.Values $part }}
{{- if $cfg.url }}
name: {{ include "service.fullname" $root }}
key: {{ index . 1 }}
{{- else }}
name: {{ default (printf "%s-%s" (include "service.serviceSpecName" $root) $part) $cfg.secretName }}
key: {{ if gt (len .) 3 }}{{ index . 3 }}{{ else }}{{ $cfg.secretKey }}{{ end }}
{{- end }}
{{- end }}

{{/* Rollout budget: preStop sleep + drain + uvicorn graceful timeout must end before SIGKILL. */}}
{{- define "service.checkShutdownBudget" -}}
{{- $s := .Values.shutdown }}
{{- $used := add $s.preStopSleepSeconds $s.drainSeconds $s.gracefulTimeoutSeconds }}
{{- if ge (int $used) (int .Values.terminationGracePeriodSeconds) }}
{{- fail (printf "shutdown.preStopSleepSeconds + drainSeconds + gracefulTimeoutSeconds (%d) must be below terminationGracePeriodSeconds (%d), or the kubelet kills in-flight requests" (int $used) (int .Values.terminationGracePeriodSeconds)) }}
{{- end }}
{{- end }}

{{/* Whether a PodDisruptionBudget can do any good: more than one pod, always. */}}
{{- define "service.pdbUseful" -}}
{{- if .Values.podDisruptionBudget.enabled }}
{{- if .Values.autoscaling.enabled }}
{{- if gt (int .Values.autoscaling.minReplicas) 1 }}true{{ end }}
{{- else if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}
{{- end }}

{{/* envFrom + env shared by the app and the migrate init container. */}}
{{- define "service.containerEnv" -}}
{{- $prefix := include "service.envPrefix" . -}}
envFrom:
  - configMapRef:
      name: {{ include "service.fullname" . }}
{{- with .Values.envFrom }}
{{- toYaml . | nindent 2 }}
{{- end }}
env:
  # Shared with the gateway (services/kit/forwarding.py); optional: a service installed
  # without it counts per-address limits under the gateway pod's address.
  - name: {{ $prefix }}FORWARDING_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ .Values.forwardingTokenSecret | default (printf "%s-forwarding" .Release.Name) }}
        key: FORWARDING_TOKEN
        optional: true
  {{- if .Values.database.enabled }}
  - name: {{ $prefix }}DATABASE_URL
    valueFrom:
      secretKeyRef:
        {{- include "service.urlSecretRef" (list "database" "DATABASE_URL" .) | trim | nindent 8 }}
  {{- end }}
  {{- if .Values.redis.enabled }}
  - name: {{ $prefix }}REDIS_URL
    valueFrom:
      secretKeyRef:
        {{- include "service.urlSecretRef" (list "redis" "REDIS_URL" .) | trim | nindent 8 }}
  {{- if not .Values.redis.url }}
  # The event stream's own Redis when the ServiceSpec asks for one (redis.events:
  # Dedicated); absent, the stream shares REDIS_URL.
  - name: {{ $prefix }}EVENTS_REDIS_URL
    valueFrom:
      secretKeyRef:
        {{- include "service.urlSecretRef" (list "redis" "EVENTS_REDIS_URL" . "EVENTS_REDIS_URL") | trim | nindent 8 }}
        optional: true
  {{- end }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
