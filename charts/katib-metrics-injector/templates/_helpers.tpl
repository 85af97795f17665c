{{/* Names, labels and derived values shared by every template of the chart. */}}

{{- define "kmi.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>", cut to leave room for the "-tls"/"-ca"/"-katib-config" suffixes in 63 characters. */}}
{{- define "kmi.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kmi.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kmi.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kmi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: injector
{{- end }}

{{- define "kmi.labels" -}}
helm.sh/chart: {{ include "kmi.chart" . }}
{{ include "kmi.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: katib-metrics
{{- end }}

{{/* Labels of the helm test objects: not the injector's selector, so the Service never routes to them. */}}
{{- define "kmi.testLabels" -}}
helm.sh/chart: {{ include "kmi.chart" . }}
app.kubernetes.io/name: {{ include "kmi.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: test
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "kmi.serviceAccountName" -}}
{{- default (include "kmi.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "kmi.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "kmi.collectorImage" -}}
{{- default (include "kmi.image" .) .Values.katibConfig.collectorImage }}
{{- end }}

{{/* The webhook configuration is cluster-scoped: the namespace keeps two releases of the same name apart. */}}
{{- define "kmi.webhookConfigName" -}}
{{- printf "%s-%s" (include "kmi.fullname" .) .Release.Namespace | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kmi.tlsSecretName" -}}
{{- if eq .Values.certificates.mode "secret" }}
{{- .Values.certificates.secret.name }}
{{- else }}
{{- printf "%s-tls" (include "kmi.fullname" .) }}
{{- end }}
{{- end }}

{{- define "kmi.katibConfigMapName" -}}
{{- printf "%s-katib-config" (include "kmi.fullname" .) }}
{{- end }}

{{- define "kmi.serviceDNSName" -}}
{{- printf "%s.%s.svc" (include "kmi.fullname" .) .Release.Namespace }}
{{- end }}

{{- define "kmi.dbManagerNamespace" -}}
{{- default .Values.katib.namespace .Values.katib.dbManager.namespace }}
{{- end }}

{{/* katib-config document (KatibConfig) with runtime.metricsCollectors pointing at the collector image. */}}
{{- define "kmi.katibConfig" -}}
{{- $collectors := list }}
{{- range .Values.katibConfig.metricsCollectors }}
{{- $entry := dict "kind" .kind "image" (default (include "kmi.collectorImage" $) .image) "imagePullPolicy" (default $.Values.katibConfig.collectorPullPolicy .imagePullPolicy) }}
{{- if .resources }}{{ $_ := set $entry "resources" .resources }}{{ end }}
{{- if hasKey . "waitAllProcesses" }}{{ $_ := set $entry "waitAllProcesses" .waitAllProcesses }}{{ end }}
{{- $collectors = append $collectors $entry }}
{{- end }}
{{- $config := dict "apiVersion" "config.kubeflow.org/v1beta1" "kind" "KatibConfig" }}
{{- $_ := set $config "init" (dict "controller" (dict "injectSecurityContext" .Values.katibConfig.injectSecurityContext)) }}
{{- $_ := set $config "runtime" (dict "metricsCollectors" $collectors) }}
{{- toYaml $config }}
{{- end }}
