package deploycheck

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/lae-screening/lae/internal/config"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Overlays are the kustomize overlays under deploy/k8s/overlays that must build.
var Overlays = []string{"dev", "gpu"}

// Objects is one kustomize build, each object decoded strictly into its type.
type Objects struct {
	Deployments   []appsv1.Deployment
	Jobs          []batchv1.Job
	Services      []corev1.Service
	ConfigMaps    []corev1.ConfigMap
	Secrets       []corev1.Secret
	Claims        []corev1.PersistentVolumeClaim
	ScaledObjects []ScaledObject
	Monitors      []ServiceMonitor
}

// ScaledObject is the part of KEDA's keda.sh/v1alpha1 ScaledObject these manifests use; a
// field it does not know is an error, so a misspelt KEDA field fails here, not silently in
// the cluster.
type ScaledObject struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Metadata   ObjectMeta     `json:"metadata"`
	Spec       ScaledObjectSp `json:"spec"`
}

// ObjectMeta is the metadata a custom resource here may carry.
type ObjectMeta struct {
	Name        string            `json:"name"`
	Namespace   string            `json:"namespace,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ScaledObjectSp is a ScaledObject's spec.
type ScaledObjectSp struct {
	ScaleTargetRef struct {
		APIVersion string `json:"apiVersion,omitempty"`
		Kind       string `json:"kind,omitempty"`
		Name       string `json:"name"`
	} `json:"scaleTargetRef"`
	PollingInterval  *int32         `json:"pollingInterval,omitempty"`
	CooldownPeriod   *int32         `json:"cooldownPeriod,omitempty"`
	MinReplicaCount  *int32         `json:"minReplicaCount,omitempty"`
	MaxReplicaCount  *int32         `json:"maxReplicaCount,omitempty"`
	IdleReplicaCount *int32         `json:"idleReplicaCount,omitempty"`
	Triggers         []ScaleTrigger `json:"triggers"`
}

// ScaleTrigger is one KEDA trigger.
type ScaleTrigger struct {
	Type              string            `json:"type"`
	Name              string            `json:"name,omitempty"`
	MetricType        string            `json:"metricType,omitempty"`
	Metadata          map[string]string `json:"metadata"`
	AuthenticationRef *struct {
		Name string `json:"name"`
		Kind string `json:"kind,omitempty"`
	} `json:"authenticationRef,omitempty"`
}

// ServiceMonitor is the part of the Prometheus operator's monitoring.coreos.com/v1
// ServiceMonitor a manifest here may use.
type ServiceMonitor struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   ObjectMeta `json:"metadata"`
	Spec       struct {
		Selector struct {
			MatchLabels map[string]string `json:"matchLabels"`
		} `json:"selector"`
		Endpoints []struct {
			Port     string `json:"port"`
			Path     string `json:"path,omitempty"`
			Interval string `json:"interval,omitempty"`
		} `json:"endpoints"`
	} `json:"spec"`
}

// natsJetStreamKeys are the metadata keys of KEDA's nats-jetstream scaler; required ones true.
var natsJetStreamKeys = map[string]bool{
	"natsServerMonitoringEndpoint": true, "account": true, "stream": true, "consumer": true,
	"lagThreshold": true, "activationLagThreshold": false, "useHttps": false,
}

// Build runs kustomize (krusty, no plugins, no network) on dir of fsys and decodes every
// object strictly.
func Build(fsys filesys.FileSystem, dir string) (*Objects, error) {
	opts := krusty.MakeDefaultOptions()
	k := krusty.MakeKustomizer(opts)
	rm, err := k.Run(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("kustomize build %s: %w", dir, err)
	}
	out := &Objects{}
	for _, r := range rm.Resources() {
		b, err := r.AsYAML()
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", r.CurId(), err)
		}
		id := r.CurId().String()
		gvk := r.GetGvk()
		var target any
		switch gvk.ApiVersion() + "/" + gvk.Kind {
		case "apps/v1/Deployment":
			target = addNew(&out.Deployments)
		case "batch/v1/Job":
			target = addNew(&out.Jobs)
		case "v1/Service":
			target = addNew(&out.Services)
		case "v1/ConfigMap":
			target = addNew(&out.ConfigMaps)
		case "v1/Secret":
			target = addNew(&out.Secrets)
		case "v1/PersistentVolumeClaim":
			target = addNew(&out.Claims)
		case "keda.sh/v1alpha1/ScaledObject":
			target = addNew(&out.ScaledObjects)
		case "monitoring.coreos.com/v1/ServiceMonitor":
			target = addNew(&out.Monitors)
		default:
			return nil, fmt.Errorf("%s: kind %s/%s has no check here: add its type to deploycheck", id, gvk.ApiVersion(), gvk.Kind)
		}
		if err := yaml.UnmarshalStrict(b, target); err != nil {
			return nil, fmt.Errorf("decode %s: %w", id, err)
		}
	}
	return out, nil
}

// addNew appends a zero object to *s and returns it for decoding into (valid until the next
// append to *s).
func addNew[T any](s *[]T) *T {
	*s = append(*s, *new(T))
	return &(*s)[len(*s)-1]
}

// BuildOverlay builds deploy/k8s/overlays/<name> of the repository at root from disk.
func BuildOverlay(root, name string) (*Objects, error) {
	return Build(filesys.MakeFsOnDisk(), filepath.Join(root, "deploy", "k8s", "overlays", name))
}

// imageModelPath is where the images put the shipped model (deploy/docker/Dockerfile*);
// CheckDockerfile checks the Dockerfiles say the same.
const imageModelPath = "/opt/lae/detector/models/lae-v2.onnx"

// extraEnv are LAE_* variables read outside internal/config.
var extraEnv = []string{"LAE_CONFIG", "LAE_ORT_LIB", "LAE_OPENCV_DATA"}

// KnownEnv reports whether name is an environment variable lae reads; names outside the
// LAE_ prefix (MALLOC_ARENA_MAX, GOMEMLIMIT, ...) are not lae's to judge.
func KnownEnv(name string) bool {
	if !strings.HasPrefix(name, "LAE_") {
		return true
	}
	return slices.Contains(config.EnvNames(), name) || slices.Contains(extraEnv, name)
}

// roleUsers is the NATS user of deploy/nats/nats-server.conf each lae command logs in as.
var roleUsers = map[string]string{
	"provision": "admin", "ingest": "ingest", "detect": "detector", "aggregate": "aggregator", "rescore": "rescore",
	"serve": "serve",
}

// NATSTLSSecret is the Secret of the NATS servers' certificate (tls.crt, tls.key, ca.crt):
// the Helm values mount it into the servers, and the lae pods mount its ca.crt to verify them.
// It is made outside the overlays, by cert-manager (deploy/k8s/tls) or by hand.
const NATSTLSSecret = "nats-tls"

// externalSecrets are the Secrets the overlays use but do not make, with the keys they have.
var externalSecrets = map[string][]string{NATSTLSSecret: {"tls.crt", "tls.key", "ca.crt"}}

// singletons are the lae commands that must run as one process at a time: the aggregator
// keeps per-video state in memory, and lae serve delivers the webhooks of the verdicts it
// watches (two would deliver each twice). Their Deployments have one replica and the Recreate
// strategy (a rolling update would run two for a while).
var singletons = []string{"aggregate", "serve"}

// Check checks one build's cross references: every Secret, ConfigMap and key a pod refers
// to exists; each role logs in as its NATS user (users: NATSUsers) with that user's key of
// the lae-nats Secret; the config file a role reads is valid for internal/config; probes reach the
// port the process serves its ops endpoint on; env names are lae's; a model path is the
// image's or inside a mounted volume; the ScaledObjects scale existing Deployments on the
// schemas/v1 stream and consumer of the role.
func (o *Objects) Check(users map[string]string) error {
	var errs []error
	for _, d := range o.Deployments {
		if err := o.checkPod("deployment "+d.Name, d.Spec.Template.Spec, d.Spec.Template.Annotations, true, users); err != nil {
			errs = append(errs, err)
		}
		if d.Spec.Selector == nil || !subset(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
			errs = append(errs, fmt.Errorf("deployment %s: selector does not match the pod labels", d.Name))
		}
		if cs := d.Spec.Template.Spec.Containers; len(cs) > 0 && slices.Contains(singletons, role(cs[0])) {
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				errs = append(errs, fmt.Errorf("deployment %s: lae %s must run once: replicas 1 and strategy Recreate", d.Name, role(cs[0])))
			}
		}
	}
	for _, j := range o.Jobs {
		if err := o.checkPod("job "+j.Name, j.Spec.Template.Spec, j.Spec.Template.Annotations, false, users); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range o.Services {
		if err := o.checkService(s); err != nil {
			errs = append(errs, err)
		}
	}
	for _, so := range o.ScaledObjects {
		if err := o.checkScaledObject(so); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func subset(want, have map[string]string) bool {
	if len(want) == 0 {
		return false
	}
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}

// named is the item of items whose metadata name is name, nil when there is none.
func named[T any, P interface {
	*T
	GetName() string
}](items []T, name string) *T {
	for i := range items {
		if P(&items[i]).GetName() == name {
			return &items[i]
		}
	}
	return nil
}

func secretHas(s *corev1.Secret, key string) bool {
	if _, ok := s.Data[key]; ok {
		return true
	}
	_, ok := s.StringData[key]
	return ok
}

// role is the lae command a container runs (its first argument).
func role(c corev1.Container) string {
	if len(c.Args) == 0 {
		return ""
	}
	return c.Args[0]
}

// checkPod checks one pod template; serving says whether its lae serves the ops endpoint
// (Deployments) or runs to completion without one (the provisioning Job).
func (o *Objects) checkPod(what string, spec corev1.PodSpec, annotations map[string]string, serving bool, users map[string]string) error {
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", what, fmt.Sprintf(format, args...)))
	}
	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
		switch {
		case v.ConfigMap != nil:
			cm := named(o.ConfigMaps, v.ConfigMap.Name)
			if cm == nil {
				fail("volume %s: no ConfigMap %q", v.Name, v.ConfigMap.Name)
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					fail("volume %s: ConfigMap %s has no key %q", v.Name, cm.Name, it.Key)
				}
			}
		case v.PersistentVolumeClaim != nil:
			if named(o.Claims, v.PersistentVolumeClaim.ClaimName) == nil {
				fail("volume %s: no PersistentVolumeClaim %q", v.Name, v.PersistentVolumeClaim.ClaimName)
			}
		case v.Secret != nil:
			s := named(o.Secrets, v.Secret.SecretName)
			if keys, ok := externalSecrets[v.Secret.SecretName]; ok && s == nil {
				for _, it := range v.Secret.Items {
					if !slices.Contains(keys, it.Key) {
						fail("volume %s: Secret %s has no key %q (it has %v)", v.Name, v.Secret.SecretName, it.Key, keys)
					}
				}
				continue
			}
			if s == nil {
				fail("volume %s: no Secret %q", v.Name, v.Secret.SecretName)
				continue
			}
			for _, it := range v.Secret.Items {
				if !secretHas(s, it.Key) {
					fail("volume %s: Secret %s has no key %q", v.Name, s.Name, it.Key)
				}
			}
		}
	}
	for _, c := range spec.Containers {
		cwhat := "container " + c.Name
		for _, m := range c.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				fail("%s mounts volume %q, which the pod does not have", cwhat, m.Name)
			}
		}
		env := map[string]string{}
		for _, e := range c.Env {
			if !KnownEnv(e.Name) {
				fail("%s: env %s is not a variable lae reads (internal/config EnvNames)", cwhat, e.Name)
			}
			env[e.Name] = e.Value
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil {
				if s := named(o.Secrets, r.Name); s == nil {
					fail("%s: env %s: no Secret %q", cwhat, e.Name, r.Name)
				} else if !secretHas(s, r.Key) {
					fail("%s: env %s: Secret %s has no key %q", cwhat, e.Name, r.Name, r.Key)
				}
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil {
				if cm := named(o.ConfigMaps, r.Name); cm == nil {
					fail("%s: env %s: no ConfigMap %q", cwhat, e.Name, r.Name)
				} else if _, ok := cm.Data[r.Key]; !ok {
					fail("%s: env %s: ConfigMap %s has no key %q", cwhat, e.Name, r.Name, r.Key)
				}
			}
		}
		if err := checkNATSLogin(c, users); err != nil {
			fail("%s: %v", cwhat, err)
		}
		cfg, err := o.effectiveConfig(c, spec, env)
		if err != nil {
			fail("%s: %v", cwhat, err)
			continue
		}
		if role(c) == "detect" || role(c) == "serve" {
			if m := cfg.Detector.Model; m != "" && m != imageModelPath && !mounted(c, m) {
				fail("%s: model %s is neither the image's (%s) nor inside a mounted volume", cwhat, m, imageModelPath)
			}
		}
		if _, logsIn := roleUsers[role(c)]; logsIn {
			if err := checkNATSTLS(c, spec, cfg); err != nil {
				fail("%s: %v", cwhat, err)
			}
		}
		switch role(c) {
		case "serve":
			if !cfg.Serve.APIOnly {
				fail("%s: lae serve without --api-only runs its own stages on an embedded NATS server, apart from the cluster's roles", cwhat)
			}
		case "ingest":
			if err := checkIngestTemp(c, vols, cfg); err != nil {
				fail("%s: %v", cwhat, err)
			}
		}
		for _, p := range []string{cfg.Serve.TokensFile, cfg.NATS.TLSCA, cfg.NATS.Creds} {
			if p != "" && !mounted(c, p) {
				fail("%s: file %s is not inside a mounted volume", cwhat, p)
			}
		}
		if !serving {
			continue
		}
		if cfg.HTTP.Addr == "" {
			if c.ReadinessProbe != nil || c.LivenessProbe != nil {
				fail("%s: probes, but lae serves no ops endpoint (http.addr empty)", cwhat)
			}
			continue
		}
		_, portStr, err := net.SplitHostPort(cfg.HTTP.Addr)
		if err != nil {
			fail("%s: http.addr %q: %v", cwhat, cfg.HTTP.Addr, err)
			continue
		}
		port, _ := strconv.Atoi(portStr)
		if port == 0 {
			fail("%s: http.addr %q has no fixed port for the probes", cwhat, cfg.HTTP.Addr)
			continue
		}
		for _, pr := range []struct {
			name, path string
			p          *corev1.Probe
		}{{"readinessProbe", "/readyz", c.ReadinessProbe}, {"livenessProbe", "/healthz", c.LivenessProbe}} {
			if pr.p == nil || pr.p.HTTPGet == nil {
				fail("%s: no HTTP %s", cwhat, pr.name)
				continue
			}
			if pr.p.HTTPGet.Path != pr.path {
				fail("%s: %s path %s, want %s", cwhat, pr.name, pr.p.HTTPGet.Path, pr.path)
			}
			if got, ok := containerPort(c, pr.p.HTTPGet.Port); !ok {
				fail("%s: %s port %s is not a port of the container", cwhat, pr.name, pr.p.HTTPGet.Port.String())
			} else if got != port {
				fail("%s: %s port %d, but lae serves /healthz and /readyz on %d (http.addr %s)", cwhat, pr.name, got, port, cfg.HTTP.Addr)
			}
		}
		if annotations["prometheus.io/scrape"] == "true" && annotations["prometheus.io/port"] != strconv.Itoa(port) {
			fail("prometheus.io/port %q, but /metrics is on %d", annotations["prometheus.io/port"], port)
		}
	}
	return errors.Join(errs...)
}

// checkNATSTLS checks that a lae command that logs in to the cluster's NATS does so over TLS
// (the servers require it: deploy/helm/nats-values.yaml) and verifies the servers with the CA
// of NATSTLSSecret, mounted from that Secret.
func checkNATSTLS(c corev1.Container, spec corev1.PodSpec, cfg config.Config) error {
	for _, u := range cfg.NATS.URLs {
		if !strings.HasPrefix(u, "tls://") {
			return fmt.Errorf("NATS URL %s: the cluster's NATS takes TLS clients only (tls://)", u)
		}
	}
	if cfg.NATS.TLSCA == "" {
		return errors.New("no nats.tls_ca: the NATS servers' certificate cannot be verified")
	}
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, cfg.NATS.TLSCA)
		if err != nil || strings.HasPrefix(rel, "..") || rel == "." {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Secret == nil || v.Secret.SecretName != NATSTLSSecret {
				continue
			}
			for _, it := range v.Secret.Items {
				if it.Path == rel && it.Key == "ca.crt" {
					return nil
				}
			}
		}
	}
	return fmt.Errorf("nats.tls_ca %s is not ca.crt of the Secret %s mounted in the pod", cfg.NATS.TLSCA, NATSTLSSecret)
}

// checkIngestTemp checks that ingest's temporary files (the copies of uploads it scans) go to
// an emptyDir through TMPDIR, bounded by a sizeLimit that holds ingest.concurrency uploads of
// serve.max_upload each: the container's own layer is neither sized nor accounted for.
func checkIngestTemp(c corev1.Container, vols map[string]corev1.Volume, cfg config.Config) error {
	tmp := ""
	for _, e := range c.Env {
		if e.Name == "TMPDIR" {
			tmp = e.Value
		}
	}
	if tmp == "" {
		return errors.New("no TMPDIR: upload copies would fill the container's writable layer")
	}
	for _, m := range c.VolumeMounts {
		if m.MountPath != tmp {
			continue
		}
		v := vols[m.Name]
		if v.EmptyDir == nil || v.EmptyDir.SizeLimit == nil {
			return fmt.Errorf("TMPDIR %s: volume %s is not an emptyDir with a sizeLimit", tmp, m.Name)
		}
		need := int64(cfg.Ingest.Concurrency) * cfg.Serve.MaxUpload
		if v.EmptyDir.SizeLimit.Value() < need {
			return fmt.Errorf("TMPDIR %s: sizeLimit %s holds less than ingest.concurrency (%d) x serve.max_upload (%d bytes)",
				tmp, v.EmptyDir.SizeLimit.String(), cfg.Ingest.Concurrency, cfg.Serve.MaxUpload)
		}
		return nil
	}
	return fmt.Errorf("TMPDIR %s is not a volume mount", tmp)
}

// checkNATSLogin checks that a role container logs in as its role's NATS user with the
// password under that user's key of lae-nats (the key the NATS servers read it from).
func checkNATSLogin(c corev1.Container, users map[string]string) error {
	want, ok := roleUsers[role(c)]
	if !ok {
		return nil // not a command that logs in
	}
	var user string
	var pw *corev1.SecretKeySelector
	for _, e := range c.Env {
		switch e.Name {
		case "LAE_NATS_USER":
			user = e.Value
		case "LAE_NATS_PASSWORD":
			if e.ValueFrom != nil {
				pw = e.ValueFrom.SecretKeyRef
			}
		}
	}
	switch {
	case user != want:
		return fmt.Errorf("lae %s logs in to NATS as %q, want %q", role(c), user, want)
	case users[user] == "":
		return fmt.Errorf("NATS user %q is not in deploy/nats/nats-server.conf", user)
	case pw == nil || pw.Name != "lae-nats" || pw.Key != user:
		return fmt.Errorf("NATS user %s's password must come from Secret lae-nats key %q", user, user)
	}
	return nil
}

func containerPort(c corev1.Container, p intstr.IntOrString) (int, bool) {
	for _, cp := range c.Ports {
		if (p.Type == intstr.String && cp.Name == p.StrVal) || (p.Type == intstr.Int && cp.ContainerPort == p.IntVal) {
			return int(cp.ContainerPort), true
		}
	}
	return 0, false
}

// mounted reports whether file lies inside one of c's volume mounts.
func mounted(c corev1.Container, file string) bool {
	for _, m := range c.VolumeMounts {
		if rel, err := filepath.Rel(m.MountPath, file); err == nil && !strings.HasPrefix(rel, "..") && rel != "." {
			return true
		}
	}
	return false
}

// effectiveConfig is the configuration the container's lae starts with: the command's
// defaults, the --config file (from the ConfigMap mounted at its directory), the LAE_*
// values given literally, then the flags, through internal/config itself (so an unknown key
// in lae.yaml or a bad flag fails as it would in the pod).
func (o *Objects) effectiveConfig(c corev1.Container, spec corev1.PodSpec, env map[string]string) (config.Config, error) {
	cmdName := role(c)
	args := slices.Clone(c.Args)
	if len(args) > 0 {
		args = args[1:]
	}
	cfgPath := ""
	for i, a := range args {
		if a == "--config" && i+1 < len(args) {
			cfgPath = args[i+1]
		}
	}
	tmp, err := os.MkdirTemp("", "deploycheck")
	if err != nil {
		return config.Config{}, fmt.Errorf("temp dir: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }()
	local := ""
	if cfgPath != "" {
		data, err := o.mountedFile(c, spec, cfgPath)
		if err != nil {
			return config.Config{}, err
		}
		local = filepath.Join(tmp, "lae.yaml")
		if err := os.WriteFile(local, []byte(data), 0o600); err != nil {
			return config.Config{}, fmt.Errorf("write config copy: %w", err)
		}
		for i := range args {
			if args[i] == cfgPath && i > 0 && args[i-1] == "--config" {
				args[i] = local
			}
		}
	}
	base, err := config.LoadOver(config.ForCommand(cmdName), local)
	if err != nil {
		return config.Config{}, err
	}
	if err := applyEnv(&base, env); err != nil {
		return config.Config{}, err
	}
	for i := range args {
		if args[i] == local {
			args[i] = cfgPath
		}
	}
	if err := parseRoleFlags(cmdName, args, &base); err != nil {
		return config.Config{}, err
	}
	return base, nil
}

// parseRoleFlags parses a lae command's flags with the command's own binder (files the
// flags name are not read here, only recorded: mounted() checks them).
func parseRoleFlags(cmd string, args []string, c *config.Config) error {
	bind := config.RoleFlags
	switch cmd {
	case "serve":
		bind = func(fs *flag.FlagSet, c *config.Config) { config.StackFlags(fs, c); config.ServeFlags(fs, c) }
	case "provision":
		bind = config.ClientFlags
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("config", "", "")
	bind(fs, c)
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("lae %s flags %q: %w", cmd, args, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lae %s: unexpected arguments %q", cmd, fs.Args())
	}
	return nil
}

// mountedFile is the content of file as the container sees it through a ConfigMap or Secret
// volume.
func (o *Objects) mountedFile(c corev1.Container, spec corev1.PodSpec, file string) (string, error) {
	for _, m := range c.VolumeMounts {
		rel, err := filepath.Rel(m.MountPath, file)
		if err != nil || strings.HasPrefix(rel, "..") || rel == "." {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil {
				continue
			}
			cm := named(o.ConfigMaps, v.ConfigMap.Name)
			if cm == nil {
				return "", fmt.Errorf("%s: no ConfigMap %q", file, v.ConfigMap.Name)
			}
			key := rel
			for _, it := range v.ConfigMap.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
			data, ok := cm.Data[key]
			if !ok {
				return "", fmt.Errorf("%s: ConfigMap %s has no key %q", file, cm.Name, key)
			}
			return data, nil
		}
	}
	return "", fmt.Errorf("config file %s is not in a mounted ConfigMap", file)
}

func (o *Objects) checkService(s corev1.Service) error {
	var pods []corev1.PodTemplateSpec
	for _, d := range o.Deployments {
		if len(s.Spec.Selector) > 0 && subset(s.Spec.Selector, d.Spec.Template.Labels) {
			pods = append(pods, d.Spec.Template)
		}
	}
	if len(pods) == 0 {
		return fmt.Errorf("service %s: its selector matches no Deployment", s.Name)
	}
	for _, p := range s.Spec.Ports {
		for _, pod := range pods {
			found := false
			for _, c := range pod.Spec.Containers {
				if _, ok := containerPort(c, p.TargetPort); ok {
					found = true
				}
			}
			if !found {
				return fmt.Errorf("service %s: port %s targets %s, which its pods do not have", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	return nil
}

// scaledStreams is the JetStream stream and durable consumer each scalable role takes its
// work from (schemas/v1): the lag KEDA reads must be that role's.
var scaledStreams = map[string][2]string{
	"detect": {laev1.StreamFaces, laev1.ConsumerDetector},
	"ingest": {laev1.StreamIngest, laev1.ConsumerIngest},
}

func (o *Objects) checkScaledObject(so ScaledObject) error {
	what := "ScaledObject " + so.Metadata.Name
	if so.APIVersion != "keda.sh/v1alpha1" {
		return fmt.Errorf("%s: apiVersion %s", what, so.APIVersion)
	}
	ref := so.Spec.ScaleTargetRef
	if ref.Kind != "" && ref.Kind != "Deployment" {
		return fmt.Errorf("%s: scales a %s, want a Deployment", what, ref.Kind)
	}
	d := named(o.Deployments, ref.Name)
	if d == nil {
		return fmt.Errorf("%s: no Deployment %q to scale", what, ref.Name)
	}
	if len(d.Spec.Template.Spec.Containers) == 0 {
		return fmt.Errorf("%s: Deployment %s has no container", what, d.Name)
	}
	r := role(d.Spec.Template.Spec.Containers[0])
	want, ok := scaledStreams[r]
	if !ok {
		return fmt.Errorf("%s: Deployment %s runs lae %s, which does not scale on a queue", what, d.Name, r)
	}
	if so.Spec.MinReplicaCount == nil || *so.Spec.MinReplicaCount < 1 {
		// ingest answers lae.submit and detectors' readiness gates nothing; zero would
		// leave submissions unanswered.
		return fmt.Errorf("%s: minReplicaCount must be at least 1", what)
	}
	if so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
		return fmt.Errorf("%s: maxReplicaCount must be set and >= minReplicaCount", what)
	}
	if len(so.Spec.Triggers) == 0 {
		return fmt.Errorf("%s: no trigger", what)
	}
	for _, t := range so.Spec.Triggers {
		if t.Type != "nats-jetstream" {
			return fmt.Errorf("%s: trigger %s, want nats-jetstream (scale on the queue, not on CPU)", what, t.Type)
		}
		for k := range t.Metadata {
			if _, ok := natsJetStreamKeys[k]; !ok {
				return fmt.Errorf("%s: nats-jetstream has no metadata key %q", what, k)
			}
		}
		for k, req := range natsJetStreamKeys {
			if req && t.Metadata[k] == "" {
				return fmt.Errorf("%s: nats-jetstream needs metadata %s", what, k)
			}
		}
		if t.Metadata["stream"] != want[0] || t.Metadata["consumer"] != want[1] {
			return fmt.Errorf("%s: scales lae %s on %s/%s, but its work is %s/%s (schemas/v1)", what, r,
				t.Metadata["stream"], t.Metadata["consumer"], want[0], want[1])
		}
		if t.Metadata["account"] != NATSAccount {
			return fmt.Errorf("%s: account %q, want %q (deploy/nats/nats-server.conf)", what, t.Metadata["account"], NATSAccount)
		}
		if n, err := strconv.Atoi(t.Metadata["lagThreshold"]); err != nil || n < 1 {
			return fmt.Errorf("%s: lagThreshold %q is not a positive integer", what, t.Metadata["lagThreshold"])
		}
		host, _, err := net.SplitHostPort(t.Metadata["natsServerMonitoringEndpoint"])
		if err != nil {
			return fmt.Errorf("%s: natsServerMonitoringEndpoint: %w", what, err)
		}
		// KEDA runs in its own namespace: the endpoint names the NATS service's namespace,
		// which must be where these objects go.
		if parts := strings.Split(host, "."); len(parts) < 2 || parts[1] != so.Metadata.Namespace {
			return fmt.Errorf("%s: natsServerMonitoringEndpoint %s is not in namespace %q", what, host, so.Metadata.Namespace)
		}
	}
	return nil
}

// NATSAccount is the account of lae's users in deploy/nats/nats-server.conf.
const NATSAccount = "LAE"

// applyEnv sets the LAE_<SECTION>_<FIELD> values of env on c the way lae does
// (config.ApplyEnv); values from Secrets are not known here (empty) and keep the file's.
func applyEnv(c *config.Config, env map[string]string) error {
	return config.ApplyEnv(c, func(name string) (string, bool) {
		s, ok := env[name]
		return s, ok && s != ""
	})
}
