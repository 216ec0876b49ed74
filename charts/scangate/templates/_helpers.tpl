{{/* Names and labels. */}}
{{- define "scangate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scangate.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "scangate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scangate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "scangate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "scangate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scangate
{{- end -}}

{{- define "scangate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scangate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "scangate.tlsSecretName" -}}
{{- printf "%s-tls" (include "scangate.fullname" .) -}}
{{- end -}}

{{- define "scangate.scannerSecretName" -}}
{{- default (printf "%s-scanner" (include "scangate.fullname" .)) .Values.scanner.existingSecret -}}
{{- end -}}

{{- define "scangate.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The Service's DNS names (what the API server dials) and tls.extraDNSNames: the certificate's names. */}}
{{- define "scangate.dnsNames" -}}
{{- $svc := include "scangate.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- concat (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain)) .Values.tls.extraDNSNames | toJson -}}
{{- end -}}

{{/* Exempt namespaces: the values' list plus the release namespace, sorted and unique, as JSON. */}}
{{- define "scangate.exemptNamespaces" -}}
{{- append .Values.exemptNamespaces .Release.Namespace | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* A whole number for the ConfigMap: YAML numbers reach templates as float64 (3.6e+06 otherwise). */}}
{{- define "scangate.int" -}}
{{- printf "%d" (int64 .) -}}
{{- end -}}

{{/*
scangate's settings as NAME -> string, JSON-encoded (fromJson in the caller): the ConfigMap, the
conflict check of .Values.env and the checksum that rolls the pods all read this one list.
*/}}
{{- define "scangate.settings" -}}
{{- $v := .Values -}}
{{- $s := dict
  "ANCHORE_CLI_URL" $v.scanner.url
  "ANCHORE_API_VERSION" $v.scanner.apiVersion
  "ANCHORE_INSECURE_SKIP_TLS_VERIFY" (toString $v.scanner.insecureSkipTLSVerify)
  "SCANNER_REQUEST_TIMEOUT_MS" (include "scangate.int" $v.scanner.requestTimeoutMs)
  "SCANNER_POLL_INITIAL_MS" (include "scangate.int" $v.scanner.pollInitialMs)
  "SCANNER_POLL_MAX_MS" (include "scangate.int" $v.scanner.pollMaxMs)
  "SCANNER_RETRY_BACKOFF_MS" (include "scangate.int" $v.scanner.retryBackoffMs)
  "SCANNER_RETRY_BUDGET_MS" (include "scangate.int" $v.scanner.retryBudgetMs)
  "SCANNER_BREAKER_FAILURES" (include "scangate.int" $v.scanner.breakerFailures)
  "SCANNER_BREAKER_PROBE_INTERVAL_MS" (include "scangate.int" $v.scanner.breakerProbeIntervalMs)
  "SCAN_MAX_DURATION_MS" (include "scangate.int" $v.scanner.maxScanDurationMs)
  "MAX_CONCURRENT_SCANS" (include "scangate.int" $v.scanner.maxConcurrentScans)
  "MAX_SCANS_PER_NAMESPACE" (include "scangate.int" $v.scanner.maxScansPerNamespace)
  "MAX_NEW_SCANS_PER_REQUEST" (include "scangate.int" $v.scanner.maxNewScansPerRequest)
  "MAX_IMAGES_PER_REVIEW" (include "scangate.int" $v.maxImagesPerReview)
  "CACHE_MAX_BYTES" (include "scangate.int" $v.cache.maxBytes)
  "MAX_INFLIGHT_BODY_BYTES" (include "scangate.int" $v.server.maxInflightBodyBytes)
  "MAX_CONNECTIONS" (include "scangate.int" $v.server.maxConnections)
  "MODE" $v.mode
  "WORKLOAD_MODE" $v.workloadMode
  "NAMESPACE_MODES" (join "," $v.namespaceModes)
  "REJECT_IF_TIMEOUT" (toString $v.rejectIfTimeout)
  "DENY_LATEST_TAG" (toString $v.denyLatestTag)
  "REGISTRY_ALLOWLIST" (join "," $v.registryAllowlist)
  "EXEMPT_NAMESPACES" (include "scangate.exemptNamespaces" . | fromJsonArray | join ",")
  "CACHE_MAX_ENTRIES" (include "scangate.int" $v.cache.maxEntries)
  "CACHE_PASS_TTL_MS" (include "scangate.int" $v.cache.passTtlMs)
  "CACHE_FAIL_TTL_MS" (include "scangate.int" $v.cache.failTtlMs)
  "DEFAULT_TIMEOUT_MS" (include "scangate.int" $v.deadline.defaultTimeoutMs)
  "DEADLINE_MARGIN_MS" (include "scangate.int" $v.deadline.marginMs)
  "LOG_LEVEL" $v.logLevel
  "BREAK_GLASS_USERS" (join "," $v.breakGlass.users)
  "BREAK_GLASS_GROUPS" (join "," $v.breakGlass.groups)
  "BREAK_GLASS_PROOF_TTL_S" (include "scangate.int" $v.breakGlass.proofTtlSeconds)
  "PIN_DIGESTS" (toString $v.pinning.enabled)
  "MAX_BODY_BYTES" (include "scangate.int" $v.server.maxBodyBytes)
  "CERT_RELOAD_INTERVAL_MS" (include "scangate.int" $v.server.certReloadIntervalMs)
  "SHUTDOWN_DELAY_MS" (include "scangate.int" $v.server.shutdownDelayMs)
  "SHUTDOWN_TIMEOUT_MS" (include "scangate.int" $v.server.shutdownTimeoutMs)
  "RECHECK_ENABLED" (toString $v.recheck.enabled)
  "RECHECK_INTERVAL_S" (include "scangate.int" $v.recheck.intervalSeconds)
  "RECHECK_RATE" (toString $v.recheck.rate)
  "RECHECK_MAX_IN_FLIGHT" (include "scangate.int" $v.recheck.maxInFlight)
  "RECHECK_METRIC_NAMESPACES" (include "scangate.int" $v.recheck.metricNamespaces)
  "LEASE_NAME" $v.recheck.leaseName
  "LEASE_DURATION_S" (include "scangate.int" $v.recheck.leaseDurationSeconds)
  "EVENTS_ENABLED" (toString $v.events.enabled)
  "EVENTS_QPS" (toString $v.events.qps)
  "EVENTS_BURST" (include "scangate.int" $v.events.burst)
  "EVENTS_QUEUE_MAX" (include "scangate.int" $v.events.queueMax)
  "EVENTS_QUEUE_MAX_BYTES" (include "scangate.int" $v.events.queueMaxBytes)
-}}
{{- if $v.scanner.policyId }}{{ $_ := set $s "ANCHORE_POLICY_ID" $v.scanner.policyId }}{{ end -}}
{{- if $v.scanner.account }}{{ $_ := set $s "ANCHORE_ACCOUNT" $v.scanner.account }}{{ end -}}
{{- if include "scangate.scannerCA" . }}{{ $_ := set $s "ANCHORE_CA_FILE" "/etc/scangate/scanner-ca/ca.crt" }}{{ end -}}
{{- $s | toJson -}}
{{- end -}}

{{/* Environment set on the container itself (not through the ConfigMap). */}}
{{- define "scangate.containerEnvNames" -}}
{{- list "HOST" "PORT" "TLS_CERT_FILE" "TLS_KEY_FILE" "BREAK_GLASS_KEY_FILE" "POD_NAMESPACE" "POD_NAME" "ANCHORE_CLI_USER_FILE" "ANCHORE_CLI_PASS_FILE" "NODE_OPTIONS" | toJson -}}
{{- end -}}

{{/* "secret" or "configMap" when the scanner's CA comes from the cluster or values, else empty. */}}
{{- define "scangate.scannerCA" -}}
{{- if .Values.scanner.caCert -}}configMap
{{- else if eq .Values.scanner.caFrom.kind "Secret" -}}secret
{{- else if eq .Values.scanner.caFrom.kind "ConfigMap" -}}configMap
{{- end -}}
{{- end -}}

{{/* Refuses contradictory or dangerous values with one message each, before anything is applied. */}}
{{- define "scangate.validate" -}}
{{- $v := .Values -}}
{{- if not $v.scanner.url -}}
{{- fail "scanner.url is required (ANCHORE_CLI_URL, e.g. https://anchore.example.com/v2)" -}}
{{- end -}}
{{- if not (regexMatch "^https?://[^/?#@]+(/[^?#]*)?$" $v.scanner.url) -}}
{{- fail "scanner.url must be http(s)://HOST[:PORT][/prefix] with no credentials in it: put them in scanner.existingSecret" -}}
{{- end -}}
{{- if and $v.scanner.insecureSkipTLSVerify (include "scangate.scannerCA" .) -}}
{{- fail "scanner.insecureSkipTLSVerify and a scanner CA (scanner.caCert / scanner.caFrom) contradict each other: pick one" -}}
{{- end -}}
{{- if and $v.scanner.caCert $v.scanner.caFrom.kind -}}
{{- fail "scanner.caCert and scanner.caFrom are alternatives: set one" -}}
{{- end -}}
{{- if and $v.scanner.caCert (not (contains "-----BEGIN CERTIFICATE-----" $v.scanner.caCert)) -}}
{{- fail "scanner.caCert holds no PEM certificate" -}}
{{- end -}}
{{- if and $v.scanner.caFrom.kind (not $v.scanner.caFrom.name) -}}
{{- fail "scanner.caFrom.name is required with scanner.caFrom.kind" -}}
{{- end -}}
{{- if and $v.scanner.existingSecret $v.scanner.password -}}
{{- fail "scanner.password is ignored with scanner.existingSecret: unset one of them" -}}
{{- end -}}
{{- if lt (int64 $v.scanner.pollMaxMs) (int64 $v.scanner.pollInitialMs) -}}
{{- fail "scanner.pollMaxMs must be >= scanner.pollInitialMs" -}}
{{- end -}}
{{- if lt (int64 $v.server.maxInflightBodyBytes) (int64 $v.server.maxBodyBytes) -}}
{{- fail "server.maxInflightBodyBytes must be >= server.maxBodyBytes (one whole body must fit)" -}}
{{- end -}}
{{- $settings := include "scangate.settings" . | fromJson -}}
{{- $reserved := include "scangate.containerEnvNames" . | fromJsonArray -}}
{{- range $name, $_ := $v.env -}}
{{- if not (regexMatch "^[A-Z_][A-Z0-9_]*$" $name) -}}
{{- fail (printf "env.%s: not an environment variable name" $name) -}}
{{- end -}}
{{- if or (hasKey $settings $name) (has $name $reserved) -}}
{{- fail (printf "env.%s: set by the chart from its own value (see values.yaml); set that instead" $name) -}}
{{- end -}}
{{- if regexMatch "^ANCHORE_CLI_(USER|PASS)" $name -}}
{{- fail (printf "env.%s: credentials go in a Secret (scanner.existingSecret), never in the ConfigMap" $name) -}}
{{- end -}}
{{- end -}}
{{- $minAvailable := $v.podDisruptionBudget.minAvailable -}}
{{- if and $v.podDisruptionBudget.enabled (not (kindIs "string" $minAvailable)) (ge (int64 $minAvailable) (int64 $v.replicaCount)) -}}
{{- fail "podDisruptionBudget.minAvailable must be below replicaCount, or no node could ever be drained" -}}
{{- end -}}
{{- end -}}

{{/*
The serving certificate when the chart makes it (tls.certManager.enabled=false), as JSON
{"crt","key","ca","caBundle","notAfter","dnsNames"}. The Secret of the release is read back (lookup) and
reused as long as it names the same DNS names and is not within tls.renewBeforeDays of expiry, so an
upgrade never rotates it and the webhook's caBundle always matches what the pods serve. On renewal the
old CA stays in the caBundle beside the new one: pods serving the old certificate until they reload it
(CERT_RELOAD_INTERVAL_MS) are still trusted. `helm template` has no cluster to read, so it generates.
Call it once per render: every call without a Secret in the cluster generates a new key.
*/}}
{{- define "scangate.selfSignedTLS" -}}
{{- $v := .Values.tls -}}
{{- $dnsNames := include "scangate.dnsNames" . | fromJsonArray -}}
{{- $names := join "," (concat $dnsNames $v.extraIPAddresses) -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "scangate.tlsSecretName" .) -}}
{{- $data := dict -}}
{{- $annotations := dict -}}
{{- if $existing -}}
{{- $data = $existing.data | default dict -}}
{{- $annotations = $existing.metadata.annotations | default dict -}}
{{- end -}}
{{- $reuse := and (hasKey $data "tls.crt") (hasKey $data "tls.key") (hasKey $data "ca.crt") -}}
{{- $notAfter := get $annotations "scangate.io/not-after" -}}
{{- if and $reuse (ne (get $annotations "scangate.io/names") $names) -}}
{{- $reuse = false -}}
{{- end -}}
{{- if and $reuse $notAfter -}}
{{- $renewAt := toDate "2006-01-02T15:04:05Z07:00" $notAfter | unixEpoch | int64 -}}
{{- $renewAt = sub $renewAt (mul (int64 $v.renewBeforeDays) 86400) -}}
{{- if ge (now | unixEpoch | int64) $renewAt -}}
{{- $reuse = false -}}
{{- end -}}
{{- else -}}
{{- $reuse = false -}}
{{- end -}}
{{- if $reuse -}}
{{- $ca := get $data "ca.crt" | b64dec -}}
{{- dict "crt" (get $data "tls.crt" | b64dec) "key" (get $data "tls.key" | b64dec) "ca" $ca "caBundle" $ca "notAfter" $notAfter "names" $names | toJson -}}
{{- else -}}
{{- $ca := genCA (printf "%s-webhook-ca" (include "scangate.fullname" .)) (int $v.caValidityDays) -}}
{{- $cert := genSignedCert (index $dnsNames 2) $v.extraIPAddresses $dnsNames (int $v.certValidityDays) $ca -}}
{{- $bundle := $ca.Cert -}}
{{- if hasKey $data "ca.crt" -}}
{{- $bundle = printf "%s\n%s" (trimSuffix "\n" $ca.Cert) (get $data "ca.crt" | b64dec) -}}
{{- end -}}
{{- $notAfter = now | dateModify (printf "+%dh" (mul (int64 $v.certValidityDays) 24)) | date "2006-01-02T15:04:05Z07:00" -}}
{{- dict "crt" $cert.Cert "key" $cert.Key "ca" $ca.Cert "caBundle" $bundle "notAfter" $notAfter "names" $names | toJson -}}
{{- end -}}
{{- end -}}

{{/* The fields every webhook entry shares: where to send, how long, what to skip. */}}
{{- define "scangate.webhookCommon" -}}
{{- $root := index . 0 -}}
{{- $path := index . 1 -}}
{{- $caBundle := index . 2 -}}
{{- /* Optional 4th argument: {failurePolicy, timeoutSeconds, modeExpression} of this entry. */ -}}
{{- $entry := dict -}}
{{- if gt (len .) 3 }}{{ $entry = index . 3 }}{{ end -}}
admissionReviewVersions: ["v1", "v1beta1"]
# Its side effect (a Kubernetes Event) is never made for a dry run (README.md, "Events").
sideEffects: NoneOnDryRun
failurePolicy: {{ $entry.failurePolicy | default $root.Values.webhook.failurePolicy }}
matchPolicy: {{ $root.Values.webhook.matchPolicy }}
timeoutSeconds: {{ $entry.timeoutSeconds | default $root.Values.webhook.timeoutSeconds | int64 }}
clientConfig:
  service:
    namespace: {{ $root.Release.Namespace }}
    name: {{ include "scangate.fullname" $root }}
    path: {{ $path }}
    port: {{ $root.Values.service.port | int64 }}
  {{- if $caBundle }}
  caBundle: {{ $caBundle | b64enc }}
  {{- end }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ include "scangate.exemptNamespaces" $root }}
    {{- with $entry.modeExpression }}
    - {{ toJson . }}
    {{- end }}
    {{- with $root.Values.webhook.namespaceSelectorExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- with $root.Values.webhook.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The common part of a mutating entry (webhook.yaml): list(root, caBundle). */}}
{{- define "scangate.mutatingEntry" -}}
{{- $root := index . 0 -}}
{{- $caBundle := index . 1 -}}
admissionReviewVersions: ["v1", "v1beta1"]
sideEffects: NoneOnDryRun
failurePolicy: Ignore
reinvocationPolicy: IfNeeded
matchPolicy: {{ $root.Values.webhook.matchPolicy }}
timeoutSeconds: {{ $root.Values.pinning.timeoutSeconds | int64 }}
clientConfig:
  service:
    namespace: {{ $root.Release.Namespace }}
    name: {{ include "scangate.fullname" $root }}
    path: /mutate
    port: {{ $root.Values.service.port | int64 }}
  {{- if $caBundle }}
  caBundle: {{ $caBundle | b64enc }}
  {{- end }}
namespaceSelector:
  matchExpressions:
    - key: kubernetes.io/metadata.name
      operator: NotIn
      values: {{ include "scangate.exemptNamespaces" $root }}
    {{- if has "off" $root.Values.namespaceModes }}
    {{- /* No scan, no pin, no proof where nothing is judged. */}}
    - {"key": "scangate.io/mode", "operator": "NotIn", "values": ["off"]}
    {{- end }}
    {{- with $root.Values.webhook.namespaceSelectorExpressions }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- with $root.Values.webhook.objectSelector }}
objectSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The pod entries' matchCondition: an UPDATE that changes an image (manifests/validating-webhook.yaml). */}}
{{- define "scangate.imagesChanged" -}}
request.operation != 'UPDATE' || object.spec.containers.map(c, has(c.image) ? c.image : '') != oldObject.spec.containers.map(c, has(c.image) ? c.image : '') || (has(object.spec.initContainers) ? object.spec.initContainers.map(c, has(c.image) ? c.image : '') : []) != (has(oldObject.spec.initContainers) ? oldObject.spec.initContainers.map(c, has(c.image) ? c.image : '') : []) || (has(object.spec.ephemeralContainers) ? object.spec.ephemeralContainers.map(c, has(c.image) ? c.image : '') : []) != (has(oldObject.spec.ephemeralContainers) ? oldObject.spec.ephemeralContainers.map(c, has(c.image) ? c.image : '') : []) || (has(object.spec.volumes) ? object.spec.volumes.filter(v, has(v.image)).map(v, has(v.image.reference) ? v.image.reference : '') : []) != (has(oldObject.spec.volumes) ? oldObject.spec.volumes.filter(v, has(v.image)).map(v, has(v.image.reference) ? v.image.reference : '') : [])
{{- end -}}
