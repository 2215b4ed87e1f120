package deploy_test

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// KEDA's Go module is the whole operator (controller-runtime, cloud SDKs of
// every scaler), far too much to decode one manifest, so its ScaledObject
// spec is mirrored here field for field from
// github.com/kedacore/keda/v2/apis/keda/v1alpha1 (scaledobject_types.go and
// scaletriggers_types.go); status is left out because a manifest has none.
// The Prometheus Operator publishes its API types as a small module of their
// own, used directly.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              scaledObjectSpec `json:"spec"`
}

type scaledObjectSpec struct {
	ScaleTargetRef        *scaleTarget    `json:"scaleTargetRef"`
	PollingInterval       *int32          `json:"pollingInterval,omitempty"`
	InitialCooldownPeriod *int32          `json:"initialCooldownPeriod,omitempty"`
	CooldownPeriod        *int32          `json:"cooldownPeriod,omitempty"`
	IdleReplicaCount      *int32          `json:"idleReplicaCount,omitempty"`
	MinReplicaCount       *int32          `json:"minReplicaCount,omitempty"`
	MaxReplicaCount       *int32          `json:"maxReplicaCount,omitempty"`
	Advanced              *advancedConfig `json:"advanced,omitempty"`
	Triggers              []scaleTriggers `json:"triggers"`
	Fallback              *kedaFallback   `json:"fallback,omitempty"`
}

type kedaFallback struct {
	FailureThreshold int32  `json:"failureThreshold"`
	Replicas         int32  `json:"replicas"`
	Behavior         string `json:"behavior,omitempty"`
}

type advancedConfig struct {
	HorizontalPodAutoscalerConfig *hpaConfig       `json:"horizontalPodAutoscalerConfig,omitempty"`
	RestoreToOriginalReplicaCount bool             `json:"restoreToOriginalReplicaCount,omitempty"`
	ScalingModifiers              scalingModifiers `json:"scalingModifiers,omitempty"`
}

type scalingModifiers struct {
	Formula          string                         `json:"formula,omitempty"`
	Target           string                         `json:"target,omitempty"`
	ActivationTarget string                         `json:"activationTarget,omitempty"`
	MetricType       autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type hpaConfig struct {
	Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
	Name     string                                         `json:"name,omitempty"`
}

type scaleTarget struct {
	Name                   string `json:"name"`
	APIVersion             string `json:"apiVersion,omitempty"`
	Kind                   string `json:"kind,omitempty"`
	EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
}

type scaleTriggers struct {
	Type              string                         `json:"type"`
	Name              string                         `json:"name,omitempty"`
	UseCachedMetrics  bool                           `json:"useCachedMetrics,omitempty"`
	Metadata          map[string]string              `json:"metadata"`
	AuthenticationRef *authenticationRef             `json:"authenticationRef,omitempty"`
	MetricType        autoscalingv2.MetricTargetType `json:"metricType,omitempty"`
}

type authenticationRef struct {
	Name string `json:"name"`
	Kind string `json:"kind,omitempty"`
}

// kustomization mirrors the fields of kustomize's Kustomization
// (sigs.k8s.io/kustomize/api/types) this directory uses.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// manifests holds every object of deploy/kubernetes, decoded.
type manifests struct {
	deployments     map[string]*appsv1.Deployment
	services        []*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	serviceAccounts map[string]*corev1.ServiceAccount
	namespaces      []*corev1.Namespace
	pdbs            []*policyv1.PodDisruptionBudget
	serviceMonitors []*monitoringv1.ServiceMonitor
	prometheusRules []*monitoringv1.PrometheusRule
	scaledObjects   []*scaledObject
	files           []string
}

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// decodeStrict decodes one document into out, refusing unknown fields.
func decodeStrict(t *testing.T, where string, doc []byte, out any) {
	t.Helper()
	require.NoError(t, yaml.UnmarshalStrict(doc, out), where)
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	m := manifests{
		deployments:     map[string]*appsv1.Deployment{},
		configMaps:      map[string]*corev1.ConfigMap{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
	}
	files, err := filepath.Glob(filepath.Join("kubernetes", "*.yaml"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		m.files = append(m.files, filepath.Base(f))
		data, err := os.ReadFile(f)
		require.NoError(t, err)
		for i, doc := range docSeparator.Split(string(data), -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s document %d", f, i+1)
			var tm metav1.TypeMeta
			require.NoError(t, yaml.Unmarshal([]byte(doc), &tm), where)
			b := []byte(doc)
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 Deployment":
				var d appsv1.Deployment
				decodeStrict(t, where, b, &d)
				m.deployments[d.Name] = &d
			case "v1 Service":
				var s corev1.Service
				decodeStrict(t, where, b, &s)
				m.services = append(m.services, &s)
			case "v1 ConfigMap":
				var c corev1.ConfigMap
				decodeStrict(t, where, b, &c)
				m.configMaps[c.Name] = &c
			case "v1 ServiceAccount":
				var s corev1.ServiceAccount
				decodeStrict(t, where, b, &s)
				m.serviceAccounts[s.Name] = &s
			case "v1 Namespace":
				var n corev1.Namespace
				decodeStrict(t, where, b, &n)
				m.namespaces = append(m.namespaces, &n)
			case "policy/v1 PodDisruptionBudget":
				var p policyv1.PodDisruptionBudget
				decodeStrict(t, where, b, &p)
				m.pdbs = append(m.pdbs, &p)
			case "monitoring.coreos.com/v1 ServiceMonitor":
				var s monitoringv1.ServiceMonitor
				decodeStrict(t, where, b, &s)
				m.serviceMonitors = append(m.serviceMonitors, &s)
			case "monitoring.coreos.com/v1 PrometheusRule":
				var r monitoringv1.PrometheusRule
				decodeStrict(t, where, b, &r)
				m.prometheusRules = append(m.prometheusRules, &r)
			case "keda.sh/v1alpha1 ScaledObject":
				var s scaledObject
				decodeStrict(t, where, b, &s)
				m.scaledObjects = append(m.scaledObjects, &s)
			default:
				t.Fatalf("%s: no API type known for %s %s", where, tm.APIVersion, tm.Kind)
			}
		}
	}
	return m
}

func stripComments(doc string) string {
	var keep []string
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestKubernetesManifestsDecodeStrictly(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	require.Len(t, m.deployments, 3)
	require.Len(t, m.services, 1)
	require.Len(t, m.serviceMonitors, 1)
	require.Len(t, m.scaledObjects, 1)
	require.Len(t, m.pdbs, 2)

	// The strict decoder is what catches a misspelt field; prove it does.
	var d appsv1.Deployment
	require.Error(t, yaml.UnmarshalStrict([]byte("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replica: 2\n"), &d))
	var so scaledObject
	require.Error(t, yaml.UnmarshalStrict([]byte("spec:\n  maxReplicas: 2\n"), &so))

	// The kustomization applies every file, and nothing else.
	data, err := os.ReadFile(filepath.Join("kubernetes", "kustomization.yaml"))
	require.NoError(t, err)
	var k kustomization
	decodeStrict(t, "kustomization.yaml", data, &k)
	require.Equal(t, "Kustomization", k.Kind)
	require.ElementsMatch(t, m.files, k.Resources)
}

// roleOf returns the quiesce subcommand a Deployment runs.
func roleOf(t *testing.T, d *appsv1.Deployment) string {
	t.Helper()
	c := d.Spec.Template.Spec.Containers[0]
	require.NotEmpty(t, c.Args, d.Name)
	return c.Args[0]
}

func TestKubernetesDeployments(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	roles := map[string]*appsv1.Deployment{}
	for name, d := range m.deployments {
		roles[roleOf(t, d)] = d
		spec := d.Spec.Template.Spec
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		require.NoError(t, err)
		require.True(t, sel.Matches(labels.Set(d.Spec.Template.Labels)), "%s: selector does not match its pods", name)

		require.NotNil(t, spec.SecurityContext, name)
		require.True(t, *spec.SecurityContext.RunAsNonRoot, name)
		require.NotZero(t, *spec.SecurityContext.RunAsUser, name)
		require.Equal(t, "quiesce", spec.ServiceAccountName, name)
		require.Contains(t, m.serviceAccounts, spec.ServiceAccountName)
		require.Len(t, spec.Containers, 1, name)

		c := spec.Containers[0]
		require.Contains(t, []string{"planner", "coordinator", "worker"}, c.Args[0], name)
		require.Contains(t, c.Args, "--config=/etc/quiesce/quiesce.yaml", name)
		require.Contains(t, c.Args, "--metrics-addr=:9464", name)
		require.True(t, slices.ContainsFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--nats=") }), name)
		require.False(t, c.Resources.Requests.Cpu().IsZero(), "%s: cpu request", name)
		require.False(t, c.Resources.Requests.Memory().IsZero(), "%s: memory request", name)
		require.NotNil(t, c.LivenessProbe, name)
		require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path, name)
		require.Equal(t, "metrics", c.LivenessProbe.HTTPGet.Port.String(), name)
		require.NotNil(t, c.ReadinessProbe, name)
		require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path, name)
		require.Len(t, c.Ports, 1, name)
		require.Equal(t, "metrics", c.Ports[0].Name, name)
		require.EqualValues(t, 9464, c.Ports[0].ContainerPort, name)
		require.NotNil(t, c.SecurityContext, name)
		require.False(t, *c.SecurityContext.AllowPrivilegeEscalation, name)
		require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, name)
		require.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop, name)

		volumes := map[string]corev1.Volume{}
		for _, v := range spec.Volumes {
			volumes[v.Name] = v
		}
		for _, vm := range c.VolumeMounts {
			v, ok := volumes[vm.Name]
			require.True(t, ok, "%s mounts undefined volume %s", name, vm.Name)
			require.True(t, vm.ReadOnly, "%s: %s is writable", name, vm.Name)
			if v.ConfigMap != nil {
				require.Contains(t, m.configMaps, v.ConfigMap.Name, name)
			}
			if v.Secret != nil {
				// Group-readable through fsGroup, unreadable for anyone else.
				require.EqualValues(t, 0o440, *v.Secret.DefaultMode, "%s: %s mode", name, vm.Name)
			}
		}
		require.Equal(t, "quiesce-nats", volumes["nats-creds"].Secret.SecretName, name)
	}
	require.Len(t, roles, 3)
	require.EqualValues(t, 2, *roles["planner"].Spec.Replicas)
	require.EqualValues(t, 2, *roles["coordinator"].Spec.Replicas)

	// Only workers reach the nodes, so only they get the SSH key.
	var ssh *corev1.SecretVolumeSource
	for _, v := range roles["worker"].Spec.Template.Spec.Volumes {
		if v.Name == "ssh" {
			ssh = v.Secret
		}
	}
	require.NotNil(t, ssh)
	require.Equal(t, "quiesce-ssh", ssh.SecretName)
	var keys []string
	for _, it := range ssh.Items {
		keys = append(keys, it.Key)
	}
	require.ElementsMatch(t, []string{"id_ed25519", "known_hosts"}, keys)
	// Mounted as a directory: the kubelet swaps its files when the Secret
	// changes, and workers read a corrected known_hosts without a restart.
	// A subPath mount would never change.
	for _, vm := range roles["worker"].Spec.Template.Spec.Containers[0].VolumeMounts {
		if vm.Name == "ssh" {
			require.Empty(t, vm.SubPath, "the SSH secret is mounted whole, so its updates reach the workers")
		}
	}
	for _, role := range []string{"planner", "coordinator"} {
		for _, v := range roles[role].Spec.Template.Spec.Volumes {
			require.NotEqual(t, "ssh", v.Name, "%s must not hold the SSH key", role)
		}
	}
}

// mounted reports whether a Deployment's container sees file through one of
// its mounts.
func mounted(d *appsv1.Deployment, file string) bool {
	for _, vm := range d.Spec.Template.Spec.Containers[0].VolumeMounts {
		if vm.MountPath == file || strings.HasPrefix(file, vm.MountPath+"/") {
			return true
		}
	}
	return false
}

// The config in the ConfigMap is one quiesce accepts, and every file it names
// is mounted where it says.
func TestKubernetesConfigMatchesMounts(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	cm := m.configMaps["quiesce-config"]
	require.NotNil(t, cm)
	cfg, err := config.Parse([]byte(cm.Data["quiesce.yaml"]))
	require.NoError(t, err)
	require.Equal(t, 3, cfg.Replicas(), "production streams are replicated on the three NATS servers")

	for _, d := range m.deployments {
		require.True(t, mounted(d, "/etc/quiesce/quiesce.yaml"), d.Name)
		require.True(t, mounted(d, cfg.NATS.CredsFile), "%s: %s", d.Name, cfg.NATS.CredsFile)
	}
	var worker *appsv1.Deployment
	for _, d := range m.deployments {
		if roleOf(t, d) == "worker" {
			worker = d
		}
	}
	require.NotNil(t, worker)
	for _, cl := range cfg.Clusters {
		for _, f := range append(slices.Clone(cl.SSH.IdentityFiles), cl.SSH.KnownHosts...) {
			require.True(t, mounted(worker, f), "worker: %s", f)
			// The Secret item lands under the mount with its key as name.
			require.Contains(t, []string{"id_ed25519", "known_hosts"}, path.Base(f))
		}
	}
}

func TestKubernetesScaledObject(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	so := m.scaledObjects[0]
	target := m.deployments[so.Spec.ScaleTargetRef.Name]
	require.NotNil(t, target, "ScaledObject targets %q", so.Spec.ScaleTargetRef.Name)
	require.Equal(t, "worker", roleOf(t, target))
	require.Equal(t, "Deployment", so.Spec.ScaleTargetRef.Kind)
	require.LessOrEqual(t, *so.Spec.MinReplicaCount, *so.Spec.MaxReplicaCount)

	// One nats-jetstream trigger per task kind, on the consumer the workers
	// bind and the backlog collector reads.
	consumers := map[string]bool{}
	for _, tr := range so.Spec.Triggers {
		require.Equal(t, "nats-jetstream", tr.Type)
		for _, k := range []string{"natsServerMonitoringEndpoint", "account", "stream", "consumer", "lagThreshold"} {
			require.NotEmpty(t, tr.Metadata[k], "trigger %s: %s", tr.Name, k)
		}
		require.Equal(t, messages.StreamTasks, tr.Metadata["stream"])
		require.Regexp(t, `^[0-9]+$`, tr.Metadata["lagThreshold"])
		require.True(t, strings.HasSuffix(tr.Metadata["natsServerMonitoringEndpoint"], ":8222"))
		consumers[tr.Metadata["consumer"]] = true
	}
	for _, kind := range messages.Kinds {
		require.True(t, consumers[topology.TaskConsumer(kind)], "no trigger for %s tasks", kind)
	}
	require.Len(t, consumers, len(messages.Kinds))
}

func TestKubernetesScrapeTargets(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	svc := m.services[0]
	sm := m.serviceMonitors[0]

	smSel, err := metav1.LabelSelectorAsSelector(&sm.Spec.Selector)
	require.NoError(t, err)
	require.True(t, smSel.Matches(labels.Set(svc.Labels)), "the ServiceMonitor does not select the Service")
	require.Contains(t, sm.Spec.NamespaceSelector.MatchNames, svc.Namespace)

	ports := map[string]bool{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = true
		require.Equal(t, "metrics", p.TargetPort.String())
	}
	for _, ep := range sm.Spec.Endpoints {
		require.True(t, ports[ep.Port], "endpoint port %q is not a Service port", ep.Port)
		require.Equal(t, "/metrics", ep.Path)
	}
	svcSel := labels.SelectorFromSet(svc.Spec.Selector)
	for name, d := range m.deployments {
		require.True(t, svcSel.Matches(labels.Set(d.Spec.Template.Labels)), "the Service does not reach %s", name)
	}
	for _, p := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
		require.NoError(t, err)
		n := 0
		for _, d := range m.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				n++
				require.Greater(t, *d.Spec.Replicas, p.Spec.MinAvailable.IntVal, "%s would block every drain", p.Name)
			}
		}
		require.Equal(t, 1, n, "%s selects %d Deployments", p.Name, n)
	}
}

// The PrometheusRule carries exactly the rules promtool tests in alerts.yml.
func TestKubernetesPrometheusRuleMatchesAlerts(t *testing.T) {
	t.Parallel()
	m := loadManifests(t)
	require.Len(t, m.prometheusRules, 1)
	data, err := os.ReadFile(filepath.Join("prometheus", "alerts.yml"))
	require.NoError(t, err)
	var want monitoringv1.PrometheusRuleSpec
	decodeStrict(t, "alerts.yml", data, &want)
	require.NotEmpty(t, want.Groups)
	require.Equal(t, want, m.prometheusRules[0].Spec,
		"kubernetes/prometheusrule.yaml differs from prometheus/alerts.yml: regenerate it (see its header)")
}
