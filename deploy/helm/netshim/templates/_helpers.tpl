{{/* The app's name: netshim (or nameOverride). */}}
{{- define "netshim.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Object names: the release name when it contains the app's name (`helm install netshim`
     gives `netshim`, as install/kubernetes does), else RELEASE-netshim. */}}
{{- define "netshim.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "netshim.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "netshim.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride -}}
{{- end -}}

{{/* Selector labels: the same as install/kubernetes's, so that either install can replace the
     other (a DaemonSet's selector cannot change). */}}
{{- define "netshim.selectorLabels" -}}
app.kubernetes.io/name: {{ include "netshim.name" . }}
{{- end -}}

{{/* The pods' labels: no version, so that a new chart alone does not restart every agent. */}}
{{- define "netshim.podLabels" -}}
{{ include "netshim.selectorLabels" . }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Every object's labels: install/kubernetes's, plus Helm's usual ones. */}}
{{- define "netshim.labels" -}}
{{ include "netshim.selectorLabels" . }}
app.kubernetes.io/component: node-agent
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The agent's configuration as YAML: .Values.config with the exporter switches applied.
     prometheus off: removed from `exporters` and from every pipeline. otlp on: added as
     otlp_grpc or otlp_http and appended to every pipeline. */}}
{{- define "netshim.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $exporters := $config.exporters | default dict -}}
{{- $otlp := .Values.exporters.otlp -}}
{{- $otlpType := "" -}}
{{- if $otlp.enabled -}}
{{- $settings := dict "endpoint" $otlp.endpoint -}}
{{- if eq $otlp.protocol "grpc" -}}
{{- $otlpType = "otlp_grpc" -}}
{{- $_ := set $settings "tls" (dict "insecure" $otlp.insecure) -}}
{{- else if eq $otlp.protocol "http" -}}
{{- $otlpType = "otlp_http" -}}
{{- else -}}
{{- fail (printf "exporters.otlp.protocol: %q is neither grpc nor http" $otlp.protocol) -}}
{{- end -}}
{{- $_ := set $exporters $otlpType (mergeOverwrite $settings (deepCopy ($otlp.settings | default dict))) -}}
{{- end -}}
{{- if not .Values.exporters.prometheus.enabled -}}
{{- $_ := unset $exporters "prometheus" -}}
{{- else if not .Values.exporters.prometheus.secure -}}
{{- $prometheus := $exporters.prometheus | default dict -}}
{{- $_ := unset $prometheus "tls" -}}
{{- $_ := set $prometheus "auth" (dict "mode" "none") -}}
{{- $_ := set $exporters "prometheus" $prometheus -}}
{{- end -}}
{{- $_ := set $config "exporters" $exporters -}}
{{- range $id, $pipeline := $config.service.pipelines -}}
{{- $list := $pipeline.exporters | default list -}}
{{- if not $.Values.exporters.prometheus.enabled -}}
{{- $list = without $list "prometheus" -}}
{{- end -}}
{{- if and $otlpType (not (has $otlpType $list)) -}}
{{- $list = append $list $otlpType -}}
{{- end -}}
{{- if not $list -}}
{{- fail (printf "service.pipelines.%s has no exporter left: enable exporters.prometheus or exporters.otlp" $id) -}}
{{- end -}}
{{- $_ := set $pipeline "exporters" $list -}}
{{- end -}}
{{- if not (has "health_check" ($config.service.extensions | default list)) -}}
{{- fail "config.service.extensions must list health_check: the DaemonSet's probes use it" -}}
{{- end -}}
{{- /* The usual sections in the usual order (toYaml alone sorts keys), then anything else. */ -}}
{{- $order := list "receivers" "resolvers" "exporters" "extensions" "service" -}}
{{- range $key := $order -}}
{{- if hasKey $config $key }}
{{ dict $key (get $config $key) | toYaml }}
{{- end -}}
{{- end -}}
{{- $rest := omit $config "receivers" "resolvers" "exporters" "extensions" "service" -}}
{{- if $rest }}
{{ toYaml $rest }}
{{- end -}}
{{- end -}}

{{/* The port of a host:port listen address ("0.0.0.0:9091", "[::]:9091"). */}}
{{- define "netshim.port" -}}
{{- splitList ":" . | last -}}
{{- end -}}
