package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// freePort asks the kernel for a free loopback port.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// proc is a child process of the multi-process test.
type proc struct {
	name string
	cmd  *exec.Cmd
	http string
	log  string
	done chan error
}

func startProc(t *testing.T, dir, name, bin string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	require.NoError(t, err)
	cmd := exec.Command(bin, args...)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	require.NoError(t, cmd.Start(), name)
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait(); f.Close() }()
	t.Cleanup(func() {
		n := 4000
		var exit error
		if t.Failed() && dumpOnFailure(cmd, p.done, &exit) {
			n = 40000 // the goroutine dump: where a stuck process waits
		} else {
			_ = cmd.Process.Kill()
			exit = <-p.done // "signal: killed" unless it had stopped already
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log (exit: %v) ---\n%s", name, exit, tail(string(b), n))
		}
	})
	return p
}

// dumpOnFailure asks a process still running to print its goroutines (SIGQUIT: Go programs,
// lae and nats-server, dump them and exit) and waits a few seconds for it; it reports whether
// the process exited that way, with its exit in *exit. A failed test's logs then say where a
// process that stopped making progress was waiting.
func dumpOnFailure(cmd *exec.Cmd, done chan error, exit *error) bool {
	if cmd.Process.Signal(syscall.SIGQUIT) != nil {
		return false
	}
	select {
	case *exit = <-done:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// stop sends SIGTERM and requires a clean exit: the roles drain in-flight work and return.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-p.done:
		p.done <- err
		require.NoError(t, err, "%s exits cleanly on SIGTERM", p.name)
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not stop within 60s of SIGTERM", p.name)
	}
}

func httpGet(url string) (string, int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.StatusCode, err
}

var scoredRe = regexp.MustCompile(`(?m)^lae_crops_scored_total ([0-9.e+]+)$`)

func metricValue(t *testing.T, addr string, re *regexp.Regexp) float64 {
	t.Helper()
	body, code, err := httpGet("http://" + addr + "/metrics")
	require.NoError(t, err)
	require.Equal(t, 200, code)
	m := re.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	require.NoError(t, err)
	return v
}

// TestMultiProcess runs the distributed roles as separate processes around a separate
// nats-server process (configured by deploy/nats/nats-server.conf, each role its own user), submits three videos with `lae submit`, follows them with `lae watch`,
// and rescores one with `lae rescore`.
func TestMultiProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	dir := t.TempDir()
	// The deployment's own server config: JetStream, the LAE account, a user per role with
	// only the subjects it needs. Every process below connects as its role.
	srv := newNATSProc(t, dir, "lae-test", true)
	natsURL, asUser := srv.URL, srv.asUser

	// The operator provisions once; the roles' users may only look the streams up.
	_, stderr, code := runLae(t, time.Minute, "provision", "--config", asUser("admin"))
	require.Equal(t, 0, code, stderr)
	// denied runs one management call as user on a connection of its own (a permissions
	// violation is reported on the connection, not only to the call) and requires a refusal.
	denied := func(user, what string, call func(ctx context.Context, js jetstream.JetStream) error) {
		nc, err := srv.connect(user)
		require.NoError(t, err)
		defer nc.Close()
		js, err := jetstream.New(nc)
		require.NoError(t, err)
		// A refused API call gets no reply: the server reports the violation to the
		// connection and the call times out, so the bound is short (the allowed calls the
		// roles make below are answered in milliseconds).
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		require.Error(t, call(ctx, js), "%s must not %s", user, what)
	}
	probes := map[string]func(ctx context.Context, js jetstream.JetStream) error{
		"delete a stream": func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, laev1.StreamFaces)
		},
		"purge the verdicts": func(ctx context.Context, js jetstream.JetStream) error {
			kv, err := js.Stream(ctx, "KV_"+laev1.BucketVerdicts)
			if err != nil {
				return fmt.Errorf("look up: %w (looking up is allowed: the probe is wrong)", err)
			}
			return kv.Purge(ctx)
		},
		"change a stream's retention": func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: laev1.StreamVerdicts, Subjects: []string{"lae.verdicts.>"}, MaxAge: time.Second})
			return err
		},
	}
	for _, user := range []string{"client", "ingest", "detector", "aggregator", "rescore"} {
		for what, call := range probes {
			denied(user, what, call)
		}
	}

	env := []string{"LAE_NATS_URLS=" + natsURL, "LAE_LOG_LEVEL=debug", "LAE_DETECTOR_BATCH_SIZE=4", "LAE_INGEST_SAMPLE_FPS=10"}
	roles := map[string][]string{"ingest": {"ingest"}, "detect-1": {"detect"}, "detect-2": {"detect"}, "aggregate": {"aggregate"}}
	users := map[string]string{"ingest": "ingest", "detect-1": "detector", "detect-2": "detector", "aggregate": "aggregator"}
	procs := map[string]*proc{}
	for name, args := range roles {
		roleEnv := append([]string{"LAE_NATS_USER=" + users[name], "LAE_NATS_PASSWORD=pw-" + users[name]}, env...)
		procs[name] = startRole(t, dir, name, roleEnv, args...)
	}

	// Three different clips: one face each, different faces and motion.
	var videos []string
	for i := 0; i < 3; i++ {
		p := filepath.Join(dir, fmt.Sprintf("clip%d.mp4", i))
		testenv.WriteClip(t, p, testenv.Clip{Width: 480, Height: 360, Frames: 20, FPS: 10, Face: testenv.Drawn, DrawnRes: 160,
			Seed: int64(1 + 2*i), Size: 140 + 10*i, From: image.Pt(100+20*i, 60), To: image.Pt(140, 70)})
		videos = append(videos, p)
	}

	out, stderr, code := runLae(t, time.Minute, append([]string{"submit", "--config", asUser("client"), "--json"}, videos...)...)
	require.Equal(t, 0, code, stderr)
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var r struct {
			URL string `json:"url"`
			laev1.SubmitReply
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		require.Empty(t, r.Error)
		ids = append(ids, r.VideoID)
	}
	require.Len(t, ids, 3)

	out, stderr, code = runLae(t, 4*time.Minute, append([]string{"watch", "--config", asUser("client"), "--json", "--timeout", "3m"}, ids...)...)
	require.Equal(t, 0, code, "watch: %s", stderr)
	verdicts := map[string]laev1.Verdict{}
	sc = bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v laev1.Verdict
		require.NoError(t, json.Unmarshal(sc.Bytes(), &v))
		if v.Final {
			verdicts[v.VideoID] = v
		}
	}
	require.Len(t, verdicts, 3, "every submitted video got a final verdict")

	nc, err := srv.connect("rescore")
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	for _, id := range ids {
		v := verdicts[id]
		require.Contains(t, []string{laev1.VerdictReal, laev1.VerdictFake}, v.Verdict, "%s: %s", id, v.Error)
		published := subjectCount(t, js, laev1.StreamFaces, laev1.FacesSubject(id))
		require.NotZero(t, published)
		require.Equal(t, published, subjectCount(t, js, laev1.StreamScores, laev1.ScoresSubject(id)), "crops published = crops scored")
		require.Equal(t, published, v.CropsScored)
	}
	d1 := metricValue(t, procs["detect-1"].http, scoredRe)
	d2 := metricValue(t, procs["detect-2"].http, scoredRe)
	t.Logf("crops scored: detector 1 %.0f, detector 2 %.0f", d1, d2)
	require.Positive(t, d1, "detector 1 did work")
	require.Positive(t, d2, "detector 2 did work")

	// Rescoring with the same model yields a new revision with the same verdict.
	out, stderr, code = runLae(t, 3*time.Minute, "rescore", "--config", asUser("rescore"), "--json", ids[0])
	require.Equal(t, 0, code, "rescore: %s %s", out, stderr)
	var line rescoreLine
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &line), out)
	old := verdicts[ids[0]]
	require.Equal(t, old.Revision+1, line.Revision)
	require.Equal(t, old.Verdict, line.Verdict)
	require.InDelta(t, old.Score, line.Score, 1e-6)
	require.Equal(t, old.Model, line.Model)
	require.False(t, line.Changed)
	kv, err := js.KeyValue(ctx, laev1.BucketVerdicts)
	require.NoError(t, err)
	hist, err := kv.History(ctx, ids[0])
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(hist), 2, "the earlier revision stays in the verdict history")

	// Videos whose crops expired are scanned again from their URLs (a verdict line is a
	// manifest line).
	old2, err := json.Marshal(verdicts[ids[1]])
	require.NoError(t, err)
	manifest := filepath.Join(dir, "reingest.jsonl")
	require.NoError(t, os.WriteFile(manifest, append(old2, '\n'), 0o644))
	out, stderr, code = runLae(t, time.Minute, "rescore", "--config", asUser("client"), "--json", "--reingest", manifest)
	require.Equal(t, 0, code, "reingest: %s %s", out, stderr)
	var re struct {
		OldVideoID string `json:"old_video_id"`
		VideoID    string `json:"video_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &re), out)
	require.Equal(t, ids[1], re.OldVideoID)
	require.NotEqual(t, ids[1], re.VideoID)
	out, stderr, code = runLae(t, 3*time.Minute, "watch", "--config", asUser("client"), "--json", "--timeout", "2m", re.VideoID)
	require.Equal(t, 0, code, "watch re-ingested: %s", stderr)
	require.Contains(t, out, `"final":true`)
	require.Contains(t, out, `"verdict":"`+verdicts[ids[1]].Verdict+`"`, "same video, same model: same verdict")

	for _, name := range []string{"ingest", "detect-1", "detect-2", "aggregate"} {
		procs[name].stop(t)
	}
	// Everything above ran within the grants: the server refused nothing the roles do (the
	// denied() probes excepted, which come first).
	log, err := os.ReadFile(srv.p.log)
	require.NoError(t, err)
	var violations []string
	for _, l := range strings.Split(string(log), "\n") {
		if violationRe.MatchString(l) && !strings.Contains(l, "STREAM.DELETE") &&
			!strings.Contains(l, "STREAM.PURGE.KV_verdicts") && !strings.Contains(l, "STREAM.UPDATE.LAE_VERDICTS") {
			violations = append(violations, l)
		}
	}
	require.Empty(t, violations, "the roles need subjects their grants lack")
}

func subjectCount(t *testing.T, js jetstream.JetStream, stream, subject string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	require.NoError(t, err)
	info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	return info.State.Subjects[subject]
}
