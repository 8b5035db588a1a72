{{/* Common labels. */}}
{{- define "starlab.labels" -}}
app.kubernetes.io/part-of: starlab
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Agent selector labels (the observer discovers agents by app.kubernetes.io/name). */}}
{{- define "starlab.agent.selectorLabels" -}}
app.kubernetes.io/name: starlab-agent
app.kubernetes.io/component: agent
{{- end -}}
