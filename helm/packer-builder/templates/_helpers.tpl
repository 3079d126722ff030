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
{{ include "packer-builder.componentLabels" (dict "root" . "component" "hook") }}
{{- end }}

{{/* Labels of an object of another component (monitoring, test): the same set, its own component. */}}
{{- define "packer-builder.componentLabels" -}}
helm.sh/chart: {{ include "packer-builder.chart" .root }}
{{ include "packer-builder.selectorLabels" .root }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/component: {{ .component }}
app.kubernetes.io/part-of: packer-builder
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "packer-builder.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "packer-builder.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The hook image. No image of the hook is published anywhere, so image.repository has no default: a chart
that quietly rendered some local name would leave the pods in ImagePullBackOff.
*/}}
{{- define "packer-builder.image" -}}
{{- $repository := required "image.repository is required: build the hook image from this repository's Dockerfile, push it to a registry your nodes can pull from (ECR) and pass --set image.repository=<registry>/packer-builder-hook (docs/install.md, steps 1 and 4)" .Values.image.repository }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The `job` label of the hook's series: the Service name, as the chart's ServiceMonitor scrapes it. */}}
{{- define "packer-builder.job" -}}
{{- default (include "packer-builder.fullname" .) .Values.monitoring.alerts.job }}
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

{{/*
The `helm test` Pod's labels: never the hook's selector labels (app.kubernetes.io/name), so the Service, the
PodDisruptionBudget and the topology spread never count it as a hook pod.
*/}}
{{- define "packer-builder.testSelectorLabels" -}}
app.kubernetes.io/name: {{ include "packer-builder.name" . | trunc 58 | trimSuffix "-" }}-test
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "packer-builder.testLabels" -}}
helm.sh/chart: {{ include "packer-builder.chart" . }}
{{ include "packer-builder.testSelectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: test
app.kubernetes.io/part-of: packer-builder
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}
