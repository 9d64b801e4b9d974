{{/* A worker's labels: the selector of its workload, Service, disruption budget and spread. */}}
{{- define "feastflow.workerSelectorLabels" -}}
{{ include "feastflow.selectorLabels" .root }}
app.kubernetes.io/component: worker
feastflow.io/worker: {{ .name }}
{{- end -}}

{{/* A worker's pod template, kept apart from the workload that runs it: a Deployment, or for the pricing
canary a Rollout, whose pods also get what they need to learn their track (_pricing-canary.tpl).
  root: the chart's root context; name: the workers.<name> key; worker: its settings over workerDefaults;
  revisionLabel: the label its controller gives each revision's pods; canary: true under the Rollout. */}}
{{- define "feastflow.workerPodTemplate" -}}
{{- $root := .root -}}
{{- $worker := .worker -}}
metadata:
  labels:
    {{- include "feastflow.workerSelectorLabels" . | nindent 4 }}
  annotations:
    {{- include "feastflow.podAnnotations" (dict "root" $root "metricsPort" $worker.webPort) | nindent 4 }}
spec:
  serviceAccountName: {{ include "feastflow.serviceAccountName" $root }}
  automountServiceAccountToken: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ $worker.terminationGracePeriodSeconds }}
  {{- include "feastflow.topologySpread" (dict "root" $root "component" "worker" "worker" .name "revisionLabel" .revisionLabel) | nindent 2 }}
  containers:
    - name: worker
      image: {{ include "feastflow.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: [worker]
      ports:
        - name: web
          containerPort: {{ $worker.webPort }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "feastflow.fullname" $root }}
      env:
        - name: FEASTFLOW_WORKER_SERVICE
          value: {{ $worker.service | quote }}
        - name: FEASTFLOW_WORKER_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        # The operator views listen on the pod's own address (probes and Prometheus use it; the NetworkPolicy
        # admits only Prometheus), never on every interface.
        - name: FEASTFLOW_WORKER_WEB_HOST
          valueFrom:
            fieldRef:
              fieldPath: status.podIP
        - name: FEASTFLOW_WORKER_WEB_PORT
          value: {{ $worker.webPort | quote }}
        # One pod per worker service: a new revision is a generation of its own (consumer group and changelogs
        # named by the revision's hash), which catches up, proves itself and takes the log over at a marker on
        # every partition without a rebalance (streams/handover.py); the old pod, fenced, stops writing. A plain
        # RollingUpdate does the rest. Several pods of one service roll by rebalancing, as before.
        - name: FEASTFLOW_WORKER_HANDOVER
          value: {{ ternary "1" "0" (eq (int $worker.replicas) 1) | quote }}
        {{- if eq (int $worker.replicas) 1 }}
        - name: FEASTFLOW_WORKER_GENERATION
          valueFrom:
            fieldRef:
              fieldPath: metadata.labels['{{ .revisionLabel }}']
        {{- end }}
        # The only pod of its generation is a static member (under its pod name): a container restarted after a
        # crash takes its partitions straight back. Several pods stay dynamic unless staticMembership says so.
        - name: FEASTFLOW_STATIC_MEMBERSHIP
          value: {{ ternary "1" "0" (or $worker.staticMembership (eq (int $worker.replicas) 1)) | quote }}
        {{- include "feastflow.jwtEnv" $root | nindent 8 }}
        {{- include "feastflow.pgDsnEnv" $root | nindent 8 }}
        {{- if $root.Values.redis.existingSecret }}
        {{- include "feastflow.redisUrlEnv" $root | nindent 8 }}
        {{- end }}
        {{- if .canary }}
        {{- include "feastflow.pricingCanaryEnv" $root | nindent 8 }}
        {{- end }}
      startupProbe:
        httpGet: {path: /feastflow/health/, port: web}
        periodSeconds: 5
        failureThreshold: {{ div (int $worker.startupSeconds) 5 }}
      readinessProbe:
        httpGet: {path: /feastflow/ready/, port: web}
        periodSeconds: 5
        failureThreshold: 2
        timeoutSeconds: 3
      livenessProbe:
        # 503 once one record has been in processing longer than FEASTFLOW_STUCK_AFTER_S (a stuck partition)
        httpGet: {path: /feastflow/live/, port: web}
        periodSeconds: 10
        failureThreshold: 3
        timeoutSeconds: 3
      resources:
        {{- toYaml $worker.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - {name: data, mountPath: /var/lib/feastflow}
        - {name: tmp, mountPath: /tmp}
        {{- if .canary }}
        {{- include "feastflow.pricingCanaryVolumeMounts" $root | nindent 8 }}
        {{- end }}
  volumes:
    - name: data
      emptyDir: {sizeLimit: {{ $worker.dataSizeLimit }}}
    - name: tmp
      emptyDir: {sizeLimit: 64Mi}
    {{- if .canary }}
    {{- include "feastflow.pricingCanaryVolumes" $root | nindent 4 }}
    {{- end }}
{{- end -}}
