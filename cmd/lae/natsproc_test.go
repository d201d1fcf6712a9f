package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
)

// natsServerBin builds nats-server from the module cache once per test binary.
func natsServerBin(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(laeBin), "nats-server")
	if _, err := os.Stat(bin); err != nil {
		out, err := exec.Command("go", "build", "-o", bin, "github.com/nats-io/nats-server/v2").CombinedOutput()
		require.NoError(t, err, "build nats-server: %s", out)
	}
	return bin
}

// natsProc is the nats-server process of a multi-process test: JetStream on a fixed loopback
// port and store, so that it can be killed and started again as the same server.
type natsProc struct {
	t    *testing.T
	dir  string
	name string
	URL  string
	args []string
	env  []string
	// secured: the deployment's config (deploy/nats/nats-server.conf), every user's password
	// pw-<user>; else no authentication.
	secured bool
	p       *proc
	starts  int
}

// newNATSProc prepares (and starts) the server; secured picks the deployment's config.
func newNATSProc(t *testing.T, dir, name string, secured bool) *natsProc {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	n := &natsProc{t: t, dir: dir, name: name, URL: "nats://127.0.0.1:" + port, secured: secured}
	if secured {
		conf, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "deploy", "nats", "nats-server.conf"))
		require.NoError(t, err)
		confPath := filepath.Join(dir, "nats-server.conf")
		require.NoError(t, os.WriteFile(confPath, []byte(strings.ReplaceAll(string(conf), "/data/jetstream", filepath.Join(dir, "js"))), 0o644))
		n.env = clusterEnv(name)
		n.args = []string{"-c", confPath, "-a", "127.0.0.1", "-p", port, "-m", "0"}
	} else {
		n.args = []string{"-js", "-sd", filepath.Join(dir, "js"), "-n", name, "-a", "127.0.0.1", "-p", port}
	}
	n.start()
	return n
}

// start runs the server and waits until it accepts connections.
func (n *natsProc) start() {
	n.t.Helper()
	logName := n.name
	if n.starts > 0 {
		logName = fmt.Sprintf("%s-%d", n.name, n.starts)
	}
	n.starts++
	n.p = startProc(n.t, n.dir, logName, natsServerBin(n.t), n.env, n.args...)
	require.Eventually(n.t, func() bool {
		nc, err := n.connect("client")
		if err == nil {
			nc.Close()
		}
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "nats-server accepts connections")
}

// kill stops the server at once (SIGKILL), as a crash does.
func (n *natsProc) kill() {
	n.t.Helper()
	require.NoError(n.t, n.p.cmd.Process.Kill())
	err := <-n.p.done
	n.t.Logf("nats-server killed: %v", err)
	n.p.done <- err
}

// connect opens a client connection as user (ignored without the deployment's config).
func (n *natsProc) connect(user string) (*nats.Conn, error) {
	if !n.secured {
		return nats.Connect(n.URL)
	}
	return nats.Connect(n.URL, nats.UserInfo(user, "pw-"+user))
}

// asUser writes a client config for one of the server's users, for `lae ... --config`.
func (n *natsProc) asUser(user string) string {
	p := filepath.Join(n.dir, user+".yaml")
	require.NoError(n.t, os.WriteFile(p, []byte(fmt.Sprintf("nats:\n  urls: [%s]\n  user: %s\n  password: pw-%s\n", n.URL, user, user)), 0o644))
	return p
}

// startRole runs `lae <args>` with an operations endpoint and waits until it is ready.
func startRole(t *testing.T, dir, name string, env []string, args ...string) *proc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	p := startProc(t, dir, name, laeBin, env, append(args, "--http", addr)...)
	p.http = addr
	require.Eventually(t, func() bool {
		_, code, err := httpGet("http://" + p.http + "/readyz")
		return err == nil && code == 200
	}, time.Minute, 100*time.Millisecond, "%s ready", name)
	return p
}
