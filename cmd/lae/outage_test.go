package main

import (
	"encoding/json"
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

	laev1 "github.com/lae-screening/lae/schemas/v1"
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

// TestIngestSurvivesNATSOutage kills the NATS server (a separate process) while a video is
// being ingested and starts it again a few seconds later: the ingest role keeps running and
// stays ready, the video in flight is run again rather than failed (its final verdict is not
// "error"), and a video submitted after the outage is scanned too.
func TestIngestSurvivesNATSOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	dir := t.TempDir()
	natsBin := natsServerBin(t)
	port := freePort(t)
	url := fmt.Sprintf("nats://127.0.0.1:%d", port)
	startNATS := func(name string) *proc {
		p := startProc(t, dir, name, natsBin, nil, "-js", "-sd", filepath.Join(dir, "js"), "-n", "lae-outage",
			"-a", "127.0.0.1", "-p", strconv.Itoa(port))
		require.Eventually(t, func() bool {
			nc, err := nats.Connect(url)
			if err != nil {
				return false
			}
			nc.Close()
			return true
		}, 30*time.Second, 50*time.Millisecond, "nats-server accepts connections")
		return p
	}
	srv := startNATS("nats-server")

	env := []string{"LAE_NATS_URLS=" + url, "LAE_LOG_LEVEL=debug", "LAE_DETECTOR_BATCH_SIZE=8"}
	procs := map[string]*proc{}
	for _, role := range []string{"ingest", "detect", "aggregate"} {
		addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
		p := startProc(t, dir, role, laeBin, env, role, "--http", addr)
		p.http = addr
		procs[role] = p
	}
	ready := func(p *proc) bool {
		_, code, err := httpGet("http://" + p.http + "/readyz")
		return err == nil && code == 200
	}
	for name, p := range procs {
		require.Eventually(t, func() bool { return ready(p) }, 60*time.Second, 100*time.Millisecond, "%s ready", name)
	}

	long := filepath.Join(dir, "long.mp4")
	writeLongVideo(t, long, 300)
	submit := func(path string) string {
		out, stderr, code := runLae(t, time.Minute, "submit", "--nats", url, "--fps", "0", "--json", path)
		require.Equal(t, 0, code, stderr)
		var r laev1.SubmitReply
		require.NoError(t, json.Unmarshal([]byte(out), &r))
		require.NotEmpty(t, r.VideoID, out)
		return r.VideoID
	}
	first := submit(long)
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(procs["ingest"].log)
		return strings.Contains(string(b), "ingest started")
	}, time.Minute, 20*time.Millisecond, "ingest started")

	// The outage: SIGKILL, a few seconds down, the same server back on the same store.
	require.NoError(t, srv.cmd.Process.Kill())
	t.Logf("nats-server killed: %v", <-srv.done)
	srv.done <- nil
	time.Sleep(3 * time.Second) // the outage itself, not a wait for a condition
	startNATS("nats-server-2")

	final := func(id string) laev1.Verdict {
		out, stderr, code := runLae(t, 4*time.Minute, "watch", "--nats", url, "--json", "--timeout", "3m", id)
		require.Equal(t, 0, code, stderr)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		var v laev1.Verdict
		require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &v))
		require.True(t, v.Final)
		return v
	}
	v := final(first)
	require.NotEqual(t, laev1.VerdictError, v.Verdict, "the video in flight is run again, not failed: %s", v.Error)
	require.NotZero(t, v.CropsScored)
	for name, p := range procs {
		require.Eventually(t, func() bool { return ready(p) }, time.Minute, 100*time.Millisecond, "%s ready again", name)
		select {
		case err := <-p.done:
			t.Fatalf("%s exited during the outage: %v", name, err)
		default:
		}
	}
	short := filepath.Join(dir, "short.mp4")
	writeVideo(t, short, true)
	v = final(submit(short))
	require.NotEqual(t, laev1.VerdictError, v.Verdict, v.Error)
}
