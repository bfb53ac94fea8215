{{/* Chart name, truncated to the DNS label limit. */}}
{{- define "multus-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name prefix of every resource (63 characters at most). */}}
{{- define "multus-operator.fullname" -}}
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

{{- define "multus-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "multus-operator.labels" -}}
helm.sh/chart: {{ include "multus-operator.chart" . }}
app.kubernetes.io/name: {{ include "multus-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels; call with (dict "root" $ "component" "operator"). */}}
{{- define "multus-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "multus-operator.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* ServiceAccount names. */}}
{{- define "multus-operator.operatorServiceAccount" -}}
{{- printf "%s-operator" (include "multus-operator.fullname" .) }}
{{- end }}
{{- define "multus-operator.agentServiceAccount" -}}
{{- printf "%s-agent" (include "multus-operator.fullname" .) }}
{{- end }}
{{- define "multus-operator.hookServiceAccount" -}}
{{- printf "%s-uninstall" (include "multus-operator.fullname" .) }}
{{- end }}
{{- define "multus-operator.crdsServiceAccount" -}}
{{- printf "%s-crds" (include "multus-operator.fullname" .) }}
{{- end }}
{{- define "multus-operator.multusServiceAccount" -}}
{{- .Values.multus.serviceAccount.name }}
{{- end }}
{{- define "multus-operator.multusNamespace" -}}
{{- default .Release.Namespace .Values.multus.serviceAccount.namespace }}
{{- end }}

{{/* The username the API server gives the agent's pod token. */}}
{{- define "multus-operator.agentUsername" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "multus-operator.agentServiceAccount" .) }}
{{- end }}

{{/* Images. */}}
{{- define "multus-operator.operatorImage" -}}
{{- printf "%s:%s" .Values.operator.image.repository (default .Chart.AppVersion .Values.operator.image.tag) }}
{{- end }}
{{- define "multus-operator.agentImage" -}}
{{- printf "%s:%s" .Values.agent.image.repository (default .Chart.AppVersion .Values.agent.image.tag) }}
{{- end }}
{{/* Upstream Multus v4.3.0: the thin image has the `multus` binary, the -thick image
     `multus-shim` and `multus-daemon`. */}}
{{- define "multus-operator.multusImage" -}}
{{- $tag := .Values.multus.image.tag }}
{{- if not $tag }}
{{- $tag = ternary "v4.3.0-thick" "v4.3.0" (eq .Values.mode "thick") }}
{{- end }}
{{- printf "%s:%s" .Values.multus.image.repository $tag }}
{{- end }}

{{/* Fixed in-container views of the host used by multus-daemon (thick mode); they are the
     defaults of MultusConfig spec.thick.daemonPathPrefix and spec.thick.chrootDir. */}}
{{- define "multus-operator.daemonPathPrefix" -}}/host{{- end }}
{{- define "multus-operator.chrootDir" -}}/hostroot{{- end }}

{{/* Directory of the host kubeconfig. */}}
{{- define "multus-operator.kubeconfigDir" -}}
{{- dir .Values.paths.kubeconfigPath }}
{{- end }}

{{/* Where the agent writes the thick daemon config: <cniConfDir>/multus.d (see README,
     "The node bundle"). */}}
{{- define "multus-operator.daemonConfigDir" -}}
{{- printf "%s/multus.d" .Values.paths.cniConfDir }}
{{- end }}

{{/* "true" when path .path is .dir or inside it. */}}
{{- define "multus-operator.isUnder" -}}
{{- if or (eq .path .dir) (hasPrefix (printf "%s/" .dir) .path) }}true{{- end }}
{{- end }}

{{/* "true" when the kubeconfig directory is not inside a directory the node pod mounts
     anyway, so it needs its own mount. */}}
{{- define "multus-operator.kubeconfigNeedsMount" -}}
{{- $dir := include "multus-operator.kubeconfigDir" . }}
{{- if not (or (include "multus-operator.isUnder" (dict "path" $dir "dir" .Values.paths.cniConfDir)) (include "multus-operator.isUnder" (dict "path" $dir "dir" .Values.paths.multusConfDir))) }}true{{- end }}
{{- end }}

{{/* The directories the agent may write, one per line, without duplicates. */}}
{{- define "multus-operator.allowedDirs" -}}
{{- $dirs := list .Values.paths.cniConfDir .Values.paths.multusConfDir (include "multus-operator.kubeconfigDir" .) }}
{{- if eq .Values.mode "thick" }}
{{- $dirs = append $dirs (include "multus-operator.daemonConfigDir" .) }}
{{- end }}
{{- range uniq $dirs }}
{{ . }}
{{- end }}
{{- end }}

{{/* Checks that JSON schema cannot express because they relate two values. */}}
{{- define "multus-operator.validate" -}}
{{- $p := .Values.paths }}
{{- if eq $p.cniConfDir $p.multusConfDir }}
{{- fail "paths.multusConfDir must differ from paths.cniConfDir: Multus' confDir holds attachment configs that the container runtime must not load as the primary network" }}
{{- end }}
{{- range $d := list $p.cniConfDir $p.multusConfDir }}
{{- if include "multus-operator.isUnder" (dict "path" $.Values.agent.stateDir "dir" $d) }}
{{- fail (printf "agent.stateDir %s must lie outside %s: libcni loads every *.json there, and the agent refuses a state file inside a directory it writes" $.Values.agent.stateDir $d) }}
{{- end }}
{{- end }}
{{- if regexMatch "\\.(conf|conflist|json)$" $p.kubeconfigPath }}
{{- fail "paths.kubeconfigPath must not end in .conf, .conflist or .json: libcni would load it as a network config" }}
{{- end }}
{{- end }}

{{/* Admission policies (admission-policies.yaml): the node name a credential names. */}}
{{- define "multus-operator.nodeNameVariable" -}}
# The node the credential was issued for; empty when it names none (for example a legacy
# Secret token, or a token not bound to a Pod or Node).
- name: nodeName
  expression: >-
    'authentication.kubernetes.io/node-name' in request.userInfo.extra &&
    size(request.userInfo.extra['authentication.kubernetes.io/node-name']) == 1
    ? request.userInfo.extra['authentication.kubernetes.io/node-name'][0] : ''
{{- end }}
{{- define "multus-operator.nodeNameRequired" -}}
- expression: "variables.nodeName != ''"
  message: >-
    the node agent must authenticate with its pod's projected ServiceAccount token, which
    names its node (user extra authentication.kubernetes.io/node-name)
  reason: Forbidden
{{- end }}

{{- /*
KUBERNETES_SERVICE_HOST/PORT for every container that talks to the API server, when
apiServer.host is set; explicit env overrides what kubelet injects.
*/}}
{{- define "multus-operator.apiServerEnv" -}}
{{- if .Values.apiServer.host -}}
- name: KUBERNETES_SERVICE_HOST
  value: {{ .Values.apiServer.host | quote }}
- name: KUBERNETES_SERVICE_PORT
  value: {{ .Values.apiServer.port | quote }}
{{- end }}
{{- end }}
