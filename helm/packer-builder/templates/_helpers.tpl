{{/* Chart name, overridable. */}}
{{- define "packer-builder.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Object names. A release called like the chart (`helm install packer-builder ...`) gets plain
`packer-builder`, which is what metacontroller/compositecontroller.yaml assumes.
*/}}
{{- define "packer-builder.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "packer-builder.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable across upgrades, so never the chart version. */}}
{{- define "packer-builder.selectorLabels" -}}
app.kubernetes.io/name: {{ include "packer-builder.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "packer-builder.labels" -}}
helm.sh/chart: {{ include "packer-builder.chart" . }}
{{ include "packer-builder.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: hook
app.kubernetes.io/part-of: packer-builder
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "packer-builder.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "packer-builder.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "packer-builder.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* One hook entry of the CompositeController; every hook goes through the release's Service. */}}
{{- define "packer-builder.hook" -}}
webhook:
  service:
    name: {{ include "packer-builder.fullname" .root }}
    namespace: {{ .root.Release.Namespace }}
    port: {{ .root.Values.service.port }}
  path: {{ .path }}
  timeout: {{ .root.Values.metacontroller.hookTimeout }}
{{- end }}
