package deploycheck

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// repoRoot is the repository root (the directory of go.mod above this package).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

var dockerfiles = []DockerfileSpec{
	{Path: "deploy/docker/Dockerfile", ORT: true},
	{Path: "deploy/docker/Dockerfile.gpu", RuntimeAlso: []string{"libcudnn9-cuda-12"}},
}

// mutation is one edit of a shipped file that its check must refuse: the first from becomes
// to, and the error names want.
type mutation struct{ name, from, to, want string }

// requireMutationsFail applies each mutation to orig (from must be in it) and requires check
// to fail on the result with an error containing want.
func requireMutationsFail(t *testing.T, orig []byte, cases []mutation, check func(text []byte) error) {
	t.Helper()
	for _, m := range cases {
		t.Run(m.name, func(t *testing.T) {
			require.Contains(t, string(orig), m.from)
			err := check([]byte(strings.Replace(string(orig), m.from, m.to, 1)))
			require.ErrorContains(t, err, m.want)
		})
	}
}

func TestDockerfilesMatchSetup(t *testing.T) {
	root := repoRoot(t)
	setup, err := ParseSetup(root)
	require.NoError(t, err)
	require.Equal(t, "1.24.3", setup.ORTVersion)
	require.Contains(t, setup.Packages, "libopencv-dev")
	for _, spec := range dockerfiles {
		t.Run(filepath.Base(spec.Path), func(t *testing.T) {
			require.NoError(t, CheckDockerfile(root, spec, setup))
		})
	}
}

func TestDockerfileMutationsFail(t *testing.T) {
	root := repoRoot(t)
	setup, err := ParseSetup(root)
	require.NoError(t, err)
	orig, err := os.ReadFile(filepath.Join(root, "deploy/docker/Dockerfile"))
	require.NoError(t, err)
	requireMutationsFail(t, orig, []mutation{
		{"sha256", "ARG ORT_SHA256=92ba", "ARG ORT_SHA256=93ba", "ORT_SHA256"},
		{"ort version", "ARG ORT_VERSION=1.24.3", "ARG ORT_VERSION=1.24.4", "ORT_VERSION"},
		{"package not in setup", "build-essential pkg-config", "build-essential pkg-config cmake", "cmake"},
		{"go version", "ARG GO_VERSION=1.26.8", "ARG GO_VERSION=1.25.0", "go.mod's Go"},
		{"missing model", "detector/models/lae-v2.onnx detector", "detector/models/lae-v3.onnx detector", "lae-v3.onnx: not in the repository"},
		{"root user", "USER 10001:10001", "USER root", "non-root"},
		{"healthcheck port", "/dev/tcp/127.0.0.1/9090", "/dev/tcp/127.0.0.1/8080", "HEALTHCHECK"},
		{"unknown env", "LAE_ORT_LIB=", "LAE_ORT_LIBRARY=", "LAE_ORT_LIBRARY"},
	}, func(text []byte) error {
		return CheckDockerfile(root, DockerfileSpec{Path: "deploy/docker/Dockerfile", ORT: true, Text: string(text)}, setup)
	})
}

// TestRuntimeLibraries checks that the runtime stages install the package of every shared
// library the lae binary built here links (bin/lae, which `task build` makes before `task
// test`); a library missing from the image would fail its first container.
func TestRuntimeLibraries(t *testing.T) {
	root := repoRoot(t)
	bin := filepath.Join(root, "bin", "lae")
	if _, err := os.Stat(bin); err != nil {
		t.Skip("no bin/lae: run go tool -modfile=tools/go.mod task build")
	}
	pkgs, err := RuntimePackages(bin)
	require.NoError(t, err)
	require.Contains(t, pkgs, "libavcodec59")
	for _, spec := range dockerfiles {
		b, err := os.ReadFile(filepath.Join(root, spec.Path))
		require.NoError(t, err)
		d, err := ParseDockerfile(string(b))
		require.NoError(t, err)
		for _, p := range pkgs {
			require.Contains(t, d.Stage("runtime").Installed, p, "%s: runtime stage lacks %s, which bin/lae links", spec.Path, p)
		}
	}
}

func TestCompose(t *testing.T) {
	root := repoRoot(t)
	orig, err := os.ReadFile(filepath.Join(root, "deploy", "compose.yaml"))
	require.NoError(t, err)
	c, err := ParseCompose(orig)
	require.NoError(t, err)
	require.NoError(t, CheckCompose(root, c))

	requireMutationsFail(t, orig, []mutation{
		{"unknown field", "    restart: unless-stopped\n    environment:\n      SERVER_NAME", "    restrat: unless-stopped\n    environment:\n      SERVER_NAME", "restrat"},
		{"unknown top-level key", "\nvolumes:\n", "\nvolume:\n", "volume"},
		{"env lae does not read", "LAE_NATS_USER: ingest", "LAE_NATS_USERNAME: ingest", "LAE_NATS_USERNAME"},
		{"wrong password variable", "LAE_NATS_PASSWORD: ${LAE_INGEST_PASSWORD", "LAE_NATS_PASSWORD: ${LAE_DETECTOR_PASSWORD", "user ingest's password"},
		{"unknown nats user", "LAE_NATS_USER: aggregator", "LAE_NATS_USER: aggregate", `NATS user "aggregate"`},
		{"missing config file", "./compose/lae.yaml:/etc/lae/lae.yaml:ro\n  stop", "./compose/lae-missing.yaml:/etc/lae/lae.yaml:ro\n  stop", "lae-missing.yaml"},
		{"nats variable missing", "      LAE_SYS_PASSWORD: ${LAE_SYS_PASSWORD:?set in deploy/.env}\n", "", "$LAE_SYS_PASSWORD"},
		{"one detector", "  detector-2:\n    <<: *role\n    command: [\"detect\"", "  detector-2:\n    <<: *role\n    command: [\"aggregate\"", "lae detect"},
		{"nats image not go.mod's", "nats:2.15.2-alpine", "nats:2.10.0-alpine", "go.mod's nats-server"},
		{"tokens file not a secret", "/run/secrets/api_tokens", "/run/secrets/tokens", "tokens file"},
		{"unknown dependency", "depends_on:\n      nats:", "depends_on:\n      natz:", "unknown service natz"},
		{"serve all-in-one", `["serve", "--api-only", `, `["serve", `, "without --api-only"},
		{"serve as another user", "LAE_NATS_USER: serve", "LAE_NATS_USER: client", `as "client", want "serve"`},
		{"serve password variable missing", "      LAE_SERVE_PASSWORD: ${LAE_SERVE_PASSWORD:?set in deploy/.env}\n", "", "$LAE_SERVE_PASSWORD"},
	}, func(text []byte) error {
		c, err := ParseCompose(text)
		if err != nil {
			return err
		}
		return CheckCompose(root, c)
	})
}

func TestOverlays(t *testing.T) {
	root := repoRoot(t)
	users, _, err := NATSUsers(root)
	require.NoError(t, err)
	for _, name := range Overlays {
		t.Run(name, func(t *testing.T) {
			o, err := BuildOverlay(root, name)
			require.NoError(t, err)
			require.NoError(t, o.Check(users))
			roles := map[string]bool{}
			for _, d := range o.Deployments {
				roles[role(d.Spec.Template.Spec.Containers[0])] = true
				require.Equal(t, "lae", d.Namespace)
			}
			require.Equal(t, map[string]bool{"ingest": true, "detect": true, "aggregate": true, "serve": true}, roles)
			require.Len(t, o.ScaledObjects, 2)
			require.Len(t, o.Jobs, 1)
			det := named(o.Deployments, "lae-detector").Spec.Template.Spec
			gpu := det.Containers[0].Resources.Limits[corev1.ResourceName("nvidia.com/gpu")]
			if name == "gpu" {
				require.Equal(t, "1", gpu.String())
				require.Equal(t, "true", det.NodeSelector["nvidia.com/gpu.present"])
				require.Equal(t, "registry.example/lae-gpu:v1", det.Containers[0].Image)
			} else {
				require.True(t, gpu.IsZero())
				require.Empty(t, det.NodeSelector)
				// The dev patches reached their targets.
				require.Equal(t, "lae:dev", det.Containers[0].Image)
				require.Contains(t, det.Containers[0].Env, corev1.EnvVar{Name: "LAE_LOG_LEVEL", Value: "debug"})
				require.Equal(t, "500m", det.Containers[0].Resources.Requests.Cpu().String())
			}
			// The NATS chart reads the same Secret's keys.
			s := named(o.Secrets, "lae-nats")
			require.NotNil(t, s)
			var keys []string
			for k := range s.Data {
				keys = append(keys, k)
			}
			require.NoError(t, CheckNATSValues(root, keys))
		})
	}
}

// TestScaledObjectsUseSchemaNames reads the stream and consumer names of the built
// ScaledObjects against schemas/v1, independently of Check.
func TestScaledObjectsUseSchemaNames(t *testing.T) {
	o, err := BuildOverlay(repoRoot(t), "gpu")
	require.NoError(t, err)
	got := map[string][2]string{}
	for _, so := range o.ScaledObjects {
		m := so.Spec.Triggers[0].Metadata
		got[so.Spec.ScaleTargetRef.Name] = [2]string{m["stream"], m["consumer"]}
	}
	require.Equal(t, map[string][2]string{
		"lae-detector": {laev1.StreamFaces, laev1.ConsumerDetector},
		"lae-ingest":   {laev1.StreamIngest, laev1.ConsumerIngest},
	}, got)
}

// memFS copies deploy/k8s into memory with one file's text replaced.
func memFS(t *testing.T, root, file, from, to string) filesys.FileSystem {
	t.Helper()
	mem := filesys.MakeFsInMemory()
	base := filepath.Join(root, "deploy", "k8s")
	replaced := false
	err := filepath.WalkDir(base, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(base, p)
		if rel == file {
			require.Contains(t, string(b), from)
			b = []byte(strings.Replace(string(b), from, to, 1))
			replaced = true
		}
		return mem.WriteFile(filepath.Join("/k8s", rel), b)
	})
	require.NoError(t, err)
	require.True(t, replaced, "no file %s", file)
	return mem
}

func TestOverlayMutationsFail(t *testing.T) {
	root := repoRoot(t)
	users, _, err := NATSUsers(root)
	require.NoError(t, err)
	cases := []struct{ name, overlay, file, from, to, want string }{
		{"misspelt secret key", "dev", "base/detector.yaml", "key: detector}", "key: detectr}", `no key "detectr"`},
		{"unknown secret", "dev", "base/ingest.yaml", "{name: lae-nats, key: ingest}", "{name: lae-natz, key: ingest}", `no Secret "lae-natz"`},
		{"probe on a wrong port", "gpu", "base/aggregator.yaml", "{path: /readyz, port: ops}", "{path: /readyz, port: 9091}", "readinessProbe port 9091"},
		{"ops port moved in lae.yaml", "dev", "base/lae.yaml", `addr: ":9090"`, `addr: ":9091"`, "lae serves /healthz and /readyz on 9091"},
		{"unknown config key", "dev", "base/lae.yaml", "retention:\n  replicas: 3", "retention:\n  replica: 3", "replica"},
		{"unknown Kubernetes field", "dev", "base/ingest.yaml", "readinessProbe:", "readinesProbe:", "readinesProbe"},
		{"unknown KEDA field", "gpu", "base/scaledobjects.yaml", "cooldownPeriod: 300\n  triggers", "cooldownPeriods: 300\n  triggers", "cooldownPeriods"},
		{"wrong stream", "gpu", "base/scaledobjects.yaml", "stream: LAE_FACES", "stream: LAE_FRAMES", "LAE_FRAMES/detector"},
		{"wrong consumer", "dev", "base/scaledobjects.yaml", "consumer: ingest", "consumer: ingester", "LAE_INGEST/ingester"},
		{"cpu scaler", "dev", "base/scaledobjects.yaml", "- type: nats-jetstream", "- type: cpu", "want nats-jetstream"},
		{"monitoring endpoint namespace", "gpu", "base/scaledobjects.yaml", "nats-headless.lae.svc", "nats-headless.nats.svc", "not in namespace"},
		{"model path not mounted", "gpu", "base/lae.yaml", "  provider: cpu", "  provider: cpu\n  model: /models/lae-v3.onnx", "model /models/lae-v3.onnx"},
		{"env lae does not read", "gpu", "overlays/gpu/detector-gpu.yaml", "{name: LAE_DETECTOR_PROVIDER,", "{name: LAE_DETECTOR_PROVIDERS,", "LAE_DETECTOR_PROVIDERS"},
		{"service to no port", "dev", "base/serve.yaml", "targetPort: http", "targetPort: https", "targets https"},
		{"wrong NATS user", "dev", "base/detector.yaml", "{name: LAE_NATS_USER, value: detector}", "{name: LAE_NATS_USER, value: ingest}", `as "ingest", want "detector"`},
		{"password of another user", "gpu", "base/provision.yaml", "{name: lae-nats, key: admin}", "{name: lae-nats, key: client}", "key \"admin\""},
		{"prometheus port", "dev", "base/detector.yaml", `prometheus.io/port: "9090"`, `prometheus.io/port: "9091"`, "prometheus.io/port"},
		{"serve all-in-one", "gpu", "base/serve.yaml", "args: [serve, --api-only, ", "args: [serve, ", "without --api-only"},
		{"two serve replicas", "dev", "base/serve.yaml", "replicas: 1", "replicas: 2", "lae serve must run once"},
		{"serve rolling update", "gpu", "base/serve.yaml", "strategy: {type: Recreate}", "strategy: {type: RollingUpdate}", "lae serve must run once"},
		{"serve as client", "dev", "base/serve.yaml", "{name: LAE_NATS_USER, value: serve}", "{name: LAE_NATS_USER, value: client}", `as "client", want "serve"`},
		{"serve store claim missing", "dev", "base/serve.yaml", "claimName: lae-serve-store", "claimName: lae-serve-data", `no PersistentVolumeClaim "lae-serve-data"`},
		{"two aggregators", "gpu", "base/aggregator.yaml", "replicas: 1", "replicas: 2", "lae aggregate must run once"},
		{"ingest temp too small", "dev", "base/ingest.yaml", "sizeLimit: 5Gi", "sizeLimit: 2Gi", "sizeLimit 2Gi holds less"},
		{"ingest temp not a volume", "gpu", "base/ingest.yaml", "{name: TMPDIR, value: /var/tmp/lae}", "{name: TMPDIR, value: /tmp}", "TMPDIR /tmp is not a volume mount"},
		{"NATS without TLS", "gpu", "base/lae.yaml", "urls: [tls://nats:4222]", "urls: [nats://nats:4222]", "TLS clients only"},
		{"no CA", "dev", "base/lae.yaml", "tls_ca: /etc/nats-ca/ca.crt", "tls_ca: /etc/ssl/certs/ca.crt", "not ca.crt of the Secret nats-tls"},
		{"CA volume with the key", "dev", "base/detector.yaml", "items: [{key: ca.crt, path: ca.crt}]", "items: [{key: tls.key, path: ca.crt}]", "not ca.crt of the Secret nats-tls"},
		{"ingest temp unset", "dev", "base/ingest.yaml", "{name: TMPDIR, value: /var/tmp/lae}", "{name: LAE_LOG_LEVEL, value: info}", "no TMPDIR"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fsys := memFS(t, root, tc.file, tc.from, tc.to)
			o, err := Build(fsys, "/k8s/overlays/"+tc.overlay)
			if err == nil {
				err = o.Check(users)
			}
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestNATSValuesMutationsFail(t *testing.T) {
	root := repoRoot(t)
	orig, err := os.ReadFile(filepath.Join(root, "deploy", "helm", "nats-values.yaml"))
	require.NoError(t, err)
	keys := []string{"admin", "client", "ingest", "detector", "aggregator", "rescore", "serve", "sys"}
	require.NoError(t, CheckNATSValuesData(root, orig, keys))
	requireMutationsFail(t, orig, []mutation{
		{"two replicas", "replicas: 3", "replicas: 2", "3-replica"},
		{"unknown field", "maxSize: 200Gi", "maxSzie: 200Gi", "maxSzie"},
		{"a permission dropped", "\n              - $JS.ACK.LAE_FACES.>\n", "\n", "differs from deploy/nats/nats-server.conf"},
		{"password from a wrong key", "key: rescore}", "key: rescorer}", "LAE_RESCORE_PASSWORD"},
		{"no monitoring", "monitor:\n    enabled: true", "monitor:\n    enabled: false", "8222"},
		{"client TLS off", "  nats:\n    tls:\n      enabled: true", "  nats:\n    tls:\n      enabled: false", "config.nats.tls: TLS must be on"},
		{"routes without verify", "ca_file: /etc/nats-certs/cluster/ca.crt\n        verify: true", "ca_file: /etc/nats-certs/cluster/ca.crt\n        verify: false", "mutual TLS"},
		{"certificates from another Secret", "secretName: nats-tls", "secretName: nats-server-tls", `want "nats-tls"`},
	}, func(text []byte) error { return CheckNATSValuesData(root, text, keys) })
}

func TestKnownEnv(t *testing.T) {
	for name, want := range map[string]bool{
		"LAE_NATS_USER": true, "LAE_DETECTOR_MODEL": true, "LAE_ORT_LIB": true, "MALLOC_ARENA_MAX": true,
		"LAE_NATS_USERNAME": false, "LAE_MODEL": false,
	} {
		require.Equal(t, want, KnownEnv(name), name)
	}
	require.True(t, slices.Contains(extraEnv, "LAE_CONFIG"))
}

// TestNATSConf checks deploy/nats/nats-server.conf's users, and that the check refuses a
// missing user, a wrong password variable and a missing stream lookup.
func TestNATSConf(t *testing.T) {
	root := repoRoot(t)
	require.NoError(t, CheckNATSConf(root))
	require.Contains(t, LaeStreams(), "OBJ_"+laev1.BucketUploads)
	orig, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "nats-server.conf"))
	require.NoError(t, err)
	users, err := parseNATSUsers(root, orig)
	require.NoError(t, err)
	// lae serve --api-only may store and delete uploads; ingest may only read them.
	require.Contains(t, users["serve"].pubAllow, "$O.uploads.>")
	require.NotContains(t, users["ingest"].pubAllow, "$O.uploads.>")
	require.Contains(t, users["ingest"].pubAllow, "lae.progress.>")
	requireMutationsFail(t, orig, []mutation{
		{"no serve user", "{ user: serve,", "{ user: api,", `no user "serve"`},
		{"password variable of another user", "{ user: serve, password: $LAE_SERVE_PASSWORD", "{ user: serve, password: $LAE_CLIENT_PASSWORD", "want $LAE_SERVE_PASSWORD"},
		{"uploads not looked up", `"$JS.API.STREAM.INFO.OBJ_evidence", "$JS.API.STREAM.INFO.OBJ_uploads",`, `"$JS.API.STREAM.INFO.OBJ_evidence",`, "STREAM.INFO.OBJ_uploads"},
		{"no INFO", `"lae.scores.>",
            "$JS.API.INFO", `, `"lae.scores.>",
            `, "user detector may not publish $JS.API.INFO"},
	}, func(text []byte) error { return CheckNATSConfData(root, text) })
}

func TestCertificates(t *testing.T) {
	root := repoRoot(t)
	require.NoError(t, CheckCertificates(root))
	orig, err := os.ReadFile(filepath.Join(root, "deploy", "k8s", "tls", "certificates.yaml"))
	require.NoError(t, err)
	requireMutationsFail(t, orig, []mutation{
		{"unknown field", "renewBefore:", "renewBefor:", "renewBefor"},
		{"no route names", `    - "*.nats-headless"
`, "", "lacks the name *.nats-headless"},
		{"server only", "[server auth, client auth,", "[server auth,", `lacks usage "client auth"`},
		{"unknown issuer", "issuerRef: {name: nats-ca, kind: Issuer}", "issuerRef: {name: lae-ca, kind: Issuer}", "no Issuer of this file"},
		{"other secret", "secretName: nats-tls", "secretName: nats-cert", "no Certificate makes Secret nats-tls"},
	}, func(text []byte) error { return CheckCertificatesData(text) })
}
