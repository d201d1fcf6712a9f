package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestIngestSurvivesNATSOutage kills the NATS server (a separate process) while a video is
// being ingested and starts it again a few seconds later: the ingest role keeps running and
// stays ready, the video in flight is run again rather than failed (its final verdict is not
// "error"), and a video submitted after the outage is scanned too.
func TestIngestSurvivesNATSOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	dir := t.TempDir()
	srv := newNATSProc(t, dir, "lae-outage", false)
	url := srv.URL
	env := []string{"LAE_NATS_URLS=" + url, "LAE_LOG_LEVEL=debug", "LAE_DETECTOR_BATCH_SIZE=8"}
	procs := map[string]*proc{}
	for _, role := range []string{"ingest", "detect", "aggregate"} {
		procs[role] = startRole(t, dir, role, env, role)
	}
	ready := func(p *proc) bool {
		_, code, err := httpGet("http://" + p.http + "/readyz")
		return err == nil && code == 200
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
	srv.kill()
	time.Sleep(3 * time.Second) // the outage itself, not a wait for a condition
	srv.start()

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
