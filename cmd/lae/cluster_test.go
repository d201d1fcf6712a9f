package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"image"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// clusterNode is one nats-server process of the three-node cluster test, configured by
// deploy/nats/cluster/nats-cluster.conf with loopback addresses and test certificates.
type clusterNode struct {
	name, url string
	p         *proc
}

// testPKI writes a CA and one certificate for 127.0.0.1/localhost, usable by servers (client
// TLS, routes) and by route clients (mutual TLS), into dir. It returns the CA's path.
func testPKI(t *testing.T, dir string) (caPath string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "lae test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	require.NoError(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	require.NoError(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "nats"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"}}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	write := func(name, typ string, b []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600))
	}
	write("ca.pem", "CERTIFICATE", caDER)
	for _, role := range []string{"server", "route"} {
		write(role+".pem", "CERTIFICATE", der)
		write(role+"-key.pem", "EC PRIVATE KEY", keyDER)
	}
	return filepath.Join(dir, "ca.pem")
}

// clusterConfigs writes each node's copy of the deployment's cluster config (and of the
// single-server config it includes) with loopback routes, the test certificates and a store
// under dir; it fails when the deployment files no longer hold what it replaces, so the test
// keeps running the shipped files rather than a drifted copy.
func clusterConfigs(t *testing.T, dir, tlsDir string, routePorts []int) []string {
	t.Helper()
	root := filepath.Join(testenv.RepoRoot(), "deploy", "nats")
	base, err := os.ReadFile(filepath.Join(root, "nats-server.conf"))
	require.NoError(t, err)
	cluster, err := os.ReadFile(filepath.Join(root, "cluster", "nats-cluster.conf"))
	require.NoError(t, err)
	var paths []string
	for i := range routePorts {
		nodeDir := filepath.Join(dir, fmt.Sprintf("nats-%d", i))
		require.NoError(t, os.MkdirAll(filepath.Join(nodeDir, "cluster"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(nodeDir, "nats-server.conf"), base, 0o600))
		repl := []string{
			"/etc/nats/tls/", tlsDir + "/",
			"store_dir: /data/jetstream", "store_dir: " + filepath.Join(nodeDir, "js"),
			"listen: 0.0.0.0:6222", fmt.Sprintf("listen: 127.0.0.1:%d", routePorts[i]),
		}
		for j, p := range routePorts {
			repl = append(repl, fmt.Sprintf("nats-route://nats-%d.nats:6222", j), fmt.Sprintf("nats-route://127.0.0.1:%d", p))
		}
		conf := string(cluster)
		for k := 0; k < len(repl); k += 2 {
			require.Contains(t, conf, repl[k], "deploy/nats/cluster/nats-cluster.conf changed: update the test's substitutions")
		}
		conf = strings.NewReplacer(repl...).Replace(conf)
		p := filepath.Join(nodeDir, "cluster", "nats-cluster.conf")
		require.NoError(t, os.WriteFile(p, []byte(conf), 0o600))
		paths = append(paths, p)
	}
	return paths
}

// clusterEnv is the environment the deployment's configs (single server and cluster) read: the
// node's name and every user's password, pw-<user>.
func clusterEnv(name string) []string {
	env := []string{"SERVER_NAME=" + name, "LAE_SYS_PASSWORD=sys"}
	for _, user := range []string{"admin", "client", "serve", "ingest", "detector", "aggregator", "rescore"} {
		env = append(env, "LAE_"+strings.ToUpper(user)+"_PASSWORD=pw-"+user)
	}
	return env
}

// The shipped cluster config parses (nats-server -t), includes the per-role accounts and
// sets what deploy/nats/cluster/README.md says it sets.
func TestClusterConfigParses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server: skipped in -short mode")
	}
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	require.NoError(t, os.MkdirAll(tlsDir, 0o755))
	testPKI(t, tlsDir)
	confs := clusterConfigs(t, dir, tlsDir, []int{freePort(t), freePort(t), freePort(t)})
	cmd := exec.Command(natsServerBin(t), "-t", "-c", confs[0])
	cmd.Env = append(os.Environ(), clusterEnv("nats-0")...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "nats-server -t: %s", out)

	// A config without the TLS files must not parse: the check above really read them.
	require.NoError(t, os.Remove(filepath.Join(tlsDir, "route.pem")))
	cmd = exec.Command(natsServerBin(t), "-t", "-c", confs[0])
	cmd.Env = append(os.Environ(), clusterEnv("nats-0")...)
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "nats-server -t accepted a config whose route certificate is missing: %s", out)
}

// TestCluster runs the roles as processes against a three-node nats-server cluster (the
// shipped cluster config: TLS for clients and routes, the per-role users), provisions the
// streams with three replicas, kills the leader of the crop stream in the middle of a scan,
// and requires that the scan completes with nothing lost: every published crop scored once,
// the end-of-stream count equal to the scored crops, and the final verdict stored in the KV.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process cluster test skipped in -short mode")
	}
	start := time.Now()
	dir := t.TempDir()
	tlsDir := filepath.Join(dir, "tls")
	require.NoError(t, os.MkdirAll(tlsDir, 0o755))
	caPath := testPKI(t, tlsDir)
	routePorts := []int{freePort(t), freePort(t), freePort(t)}
	confs := clusterConfigs(t, dir, tlsDir, routePorts)

	var nodes []*clusterNode
	var urls []string
	for i, conf := range confs {
		name := fmt.Sprintf("nats-%d", i)
		port := strconv.Itoa(freePort(t))
		n := &clusterNode{name: name, url: "tls://127.0.0.1:" + port}
		n.p = startProc(t, dir, name, natsServerBin(t), clusterEnv(name), "-c", conf, "-a", "127.0.0.1", "-p", port,
			"-m", strconv.Itoa(freePort(t)))
		nodes, urls = append(nodes, n), append(urls, n.url)
	}
	connect := func(user string) (*nats.Conn, error) {
		return nats.Connect(strings.Join(urls, ","), nats.UserInfo(user, "pw-"+user), nats.RootCAs(caPath),
			nats.MaxReconnects(-1), nats.ReconnectWait(200*time.Millisecond))
	}
	asUser := func(user string, extra string) string {
		p := filepath.Join(dir, user+".yaml")
		c := fmt.Sprintf("nats:\n  urls: [%s]\n  user: %s\n  password: pw-%s\n  tls_ca: %s\n%s", strings.Join(urls, ", "), user, user, caPath, extra)
		require.NoError(t, os.WriteFile(p, []byte(c), 0o600))
		return p
	}

	// Each node accepts TLS clients (a node's URL alone: the seed list would hide a dead one).
	for _, n := range nodes {
		require.Eventually(t, func() bool {
			c, err := nats.Connect(n.url, nats.UserInfo("client", "pw-client"), nats.RootCAs(caPath))
			if err == nil {
				c.Close()
			}
			return err == nil
		}, 30*time.Second, 50*time.Millisecond, "%s accepts TLS clients", n.name)
	}
	nc, err := connect("admin")
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	// The cluster is up once its JetStream has a meta leader (AccountInfo answers) and every
	// node has routes to the other two.
	require.Eventually(t, func() bool {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.AccountInfo(actx)
		return err == nil
	}, 30*time.Second, 200*time.Millisecond, "JetStream cluster elects a meta leader")

	// The operator provisions with retention.replicas: 3, the documented key.
	_, stderr, code := runLae(t, time.Minute, "provision", "--config", asUser("admin", "retention:\n  replicas: 3\n"))
	require.Equal(t, 0, code, stderr)
	for _, name := range []string{laev1.StreamFaces, laev1.StreamFrames, laev1.StreamScores, laev1.StreamVerdicts,
		laev1.StreamIngest, "KV_" + laev1.BucketVerdicts, "OBJ_" + laev1.BucketEvidence} {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err, name)
		require.Equal(t, 3, s.CachedInfo().Config.Replicas, "%s is R3", name)
	}

	env := []string{"LAE_NATS_URLS=" + strings.Join(urls, ","), "LAE_NATS_TLS_CA=" + caPath, "LAE_LOG_LEVEL=debug",
		"LAE_DETECTOR_BATCH_SIZE=4", "LAE_INGEST_SAMPLE_FPS=10"}
	for name, role := range map[string][2]string{"ingest": {"ingest", "ingest"}, "detect": {"detect", "detector"}, "aggregate": {"aggregate", "aggregator"}} {
		startRole(t, dir, name, append([]string{"LAE_NATS_USER=" + role[1], "LAE_NATS_PASSWORD=pw-" + role[1]}, env...), role[0])
	}

	// Long enough (150 sampled frames with a face) that the kill below lands mid-scan.
	clip := filepath.Join(dir, "clip.mp4")
	testenv.WriteClip(t, clip, testenv.Clip{Width: 480, Height: 360, Frames: 150, FPS: 10, Face: testenv.Drawn, DrawnRes: 160,
		Seed: 3, Size: 150, From: image.Pt(100, 60), To: image.Pt(160, 80)})
	out, stderr, code := runLae(t, time.Minute, "submit", "--config", asUser("client", ""), "--json", clip)
	require.Equal(t, 0, code, stderr)
	var reply laev1.SubmitReply
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &reply), out)
	require.Empty(t, reply.Error)
	id := reply.VideoID

	// Kill the crop stream's leader once the first crops are stored: the detectors' consumer,
	// ingest's publishes and the aggregator's reads all move to the new leader.
	var crops uint64
	require.Eventually(t, func() bool {
		crops = subjectCount(t, js, laev1.StreamFaces, laev1.FacesSubject(id))
		return crops >= 5
	}, time.Minute, 20*time.Millisecond, "ingest publishes crops")
	s, err := js.Stream(ctx, laev1.StreamFaces)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.NotNil(t, info.Cluster)
	leader := info.Cluster.Leader
	var victim *clusterNode
	for _, n := range nodes {
		if n.name == leader {
			victim = n
		}
	}
	require.NotNil(t, victim, "the leader %q is one of the nodes", leader)
	require.NoError(t, victim.p.cmd.Process.Kill())
	t.Logf("killed %s, leader of %s, with %d crops of %s stored (%.1fs into the test)", leader, laev1.StreamFaces, crops, id, time.Since(start).Seconds())

	out, stderr, code = runLae(t, 2*time.Minute, "watch", "--config", asUser("client", ""), "--json", "--timeout", "90s", id)
	require.Equal(t, 0, code, "watch: %s", stderr)
	var final *laev1.Verdict
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 8<<20)
	for sc.Scan() {
		var v laev1.Verdict
		require.NoError(t, json.Unmarshal(sc.Bytes(), &v))
		if v.Final {
			final = &v
		}
	}
	require.NotNil(t, final, "a final verdict after the node was killed")
	require.Contains(t, []string{laev1.VerdictReal, laev1.VerdictFake}, final.Verdict, final.Error)

	// Nothing lost: the crops published, the scores stored, the end-of-stream's count and the
	// verdict's count agree.
	published := subjectCount(t, js, laev1.StreamFaces, laev1.FacesSubject(id))
	require.Greater(t, published, crops, "ingest went on publishing after the kill")
	require.Equal(t, published, subjectCount(t, js, laev1.StreamScores, laev1.ScoresSubject(id)), "every crop scored once")
	scores, err := js.Stream(ctx, laev1.StreamScores)
	require.NoError(t, err)
	raw, err := scores.GetLastMsgForSubject(ctx, laev1.EOSSubject(id))
	require.NoError(t, err)
	var eos laev1.EndOfStream
	require.NoError(t, proto.Unmarshal(raw.Data, &eos))
	require.Equal(t, published, eos.GetCropsPublished(), "end-of-stream count = crops stored")
	require.Equal(t, published, final.CropsScored, "verdict count = crops stored")
	require.Zero(t, final.CropErrors)
	kv, err := js.KeyValue(ctx, laev1.BucketVerdicts)
	require.NoError(t, err)
	entry, err := kv.Get(ctx, id)
	require.NoError(t, err)
	var stored laev1.Verdict
	require.NoError(t, json.Unmarshal(entry.Value(), &stored))
	require.True(t, stored.Final)
	require.Equal(t, final.Score, stored.Score)

	// The crop stream has a new leader among the survivors and is still replicated.
	info, err = s.Info(ctx)
	require.NoError(t, err)
	require.NotEqual(t, leader, info.Cluster.Leader)
	t.Logf("verdict %s (score %.3f, %d crops); %s now led by %s; %.1fs", final.Verdict, final.Score, published,
		laev1.StreamFaces, info.Cluster.Leader, time.Since(start).Seconds())
}
