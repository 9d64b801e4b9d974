{{/* The pricing canary (values: pricingCanary). The catalog worker runs under an Argo Rollout; a new revision
first runs as one shadow pod (its own consumer group and tables, writing nothing customers see) that the
AnalysisTemplate in pricing-canary-analysis.yaml compares with the stable pods through Prometheus. */}}

{{/* The workers.<name> key of the catalog service, the one the canary replaces; "" when the canary is off. */}}
{{- define "feastflow.pricingCanaryWorker" -}}
{{- if .Values.pricingCanary.enabled -}}
{{- $names := list -}}
{{- range $name, $entry := .Values.workers -}}
{{- if eq (mergeOverwrite (deepCopy $.Values.workerDefaults) $entry).service "catalog" -}}
{{- $names = append $names $name -}}
{{- end -}}
{{- end -}}
{{- if ne (len $names) 1 -}}
{{- fail (printf "pricingCanary.enabled needs exactly one worker with service catalog; found %v" $names) -}}
{{- end -}}
{{- first $names -}}
{{- end -}}
{{- end -}}

{{/* Where a pod reads its own labels (a downwardAPI volume), to learn its track (streams/app.py pod_track). */}}
{{- define "feastflow.podinfoDir" -}}/etc/podinfo{{- end -}}

{{/* A pod's track, set by the Rollout as the label streams.app.TRACK_LABEL: "shadow" runs the candidate
(FEASTFLOW_WORKER_SERVICE=shadow), anything else the worker's own service. On promotion the label changes
and the process restarts itself in its new role. */}}
{{- define "feastflow.pricingCanaryEnv" -}}
- name: FEASTFLOW_TRACK_FILE
  value: {{ include "feastflow.podinfoDir" . }}/labels
# The shadow's consumer group and changelog topics are named <namespace>-shadow-<this>. The Rollout's
# revision hash: one fresh group per candidate, the same one again when that candidate is retried, and
# only letters and digits, so valid in a Kafka topic name. (The Helm release revision would not do: it is
# always 1 under `helm template`, which render.sh and Argo CD use, and changes on upgrades that change
# no pod.)
- name: FEASTFLOW_SHADOW_LABEL
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['rollouts-pod-template-hash']
- name: FEASTFLOW_SHADOW_EXPECT
  value: {{ .Values.pricingCanary.expectedChanges | toJson | quote }}
{{- end -}}

{{- define "feastflow.pricingCanaryVolumeMounts" -}}
- {name: podinfo, mountPath: {{ include "feastflow.podinfoDir" . }}, readOnly: true}
{{- end -}}

{{- define "feastflow.pricingCanaryVolumes" -}}
# The kubelet rewrites this file when the Rollout relabels the pod: a file, unlike an environment
# variable, follows a promotion.
- name: podinfo
  downwardAPI:
    items:
      - path: labels
        fieldRef: {fieldPath: metadata.labels}
{{- end -}}

{{/* The Rollout's strategy. */}}
{{- define "feastflow.pricingCanaryStrategy" -}}
canary:
  # As the Deployment rolls: one pod more at a time, never one ready pod fewer.
  maxSurge: 1
  maxUnavailable: 0
  canaryMetadata:
    labels: {feastflow.io/track: shadow}
  stableMetadata:
    labels: {feastflow.io/track: stable}
  # No trafficRouting: nothing routes requests to a stream consumer. Without it the canary is "basic",
  # and an abort sets its weight to 0, which scales the shadow down at once and leaves the stable pods
  # as they were (abortScaleDownDelaySeconds applies only with trafficRouting, so it is not set).
  steps:
    # One shadow pod beside all the stable ones. setCanaryScale would say so directly, but the controller
    # refuses it without trafficRouting. In the basic canary, weight 1 with maxSurge 1 comes to exactly one
    # canary pod and leaves the stable count whole, for any replica count: one pod in N+1 is as close to
    # 1% as it can get.
    - setWeight: 1
    - analysis:
        templates:
          - templateName: {{ include "feastflow.fullname" . }}-pricing-canary
        args:
          - name: namespace
            value: {{ .Release.Namespace }}
          - name: expected-changes
            value: {{ .Values.pricingCanary.expectedChanges | toJson | quote }}
    # No step after the analysis: once it passes the candidate is promoted (weight 100) and replaces the
    # stable pods one at a time; each restarts as the catalog service when its label turns stable.
{{- end -}}
