package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

var (
	goroutinesRe = regexp.MustCompile(`(?m)^go_goroutines ([0-9.e+]+)$`)
	rssRe        = regexp.MustCompile(`(?m)^process_resident_memory_bytes ([0-9.e+]+)$`)
)

// soakSample is one reading of a long-lived role.
type soakSample struct {
	At         float64 `json:"at_s"`
	RSSMiB     float64 `json:"rss_mib"`
	Goroutines float64 `json:"goroutines"`
}

// soakReport is what `task soak` writes (SOAK_OUT) and deploy/RELIABILITY.md quotes.
type soakReport struct {
	Duration        string                  `json:"duration"`
	Submitted       int                     `json:"submitted"`
	Refused         int                     `json:"refused_while_nats_down"`
	Final           int                     `json:"final_verdicts"`
	Errors          int                     `json:"error_verdicts"`
	Pending         int                     `json:"pending"`
	DetectorKills   int                     `json:"detector_kills"`
	NATSRestarts    int                     `json:"nats_restarts"`
	Samples         map[string][]soakSample `json:"samples"`
	RSSGrowthMiB    map[string]float64      `json:"rss_growth_mib"`
	GoroutineGrowth map[string]float64      `json:"goroutine_growth"`
}

// TestSoak runs the multi-process deployment (a NATS server process, ingest, two detectors,
// aggregator) under a stream of submissions while one detector is killed (SIGKILL) and
// restarted every 40 s and NATS every 90 s (5 s down). At the end every accepted video must
// have a final verdict, none an "error" one, and the long-lived roles' RSS and goroutines
// must be flat. Loopback only, bounded by LAE_SOAK (a duration, e.g. 5m; the test skips
// without it): `task soak`.
func TestSoak(t *testing.T) {
	d, err := time.ParseDuration(os.Getenv("LAE_SOAK"))
	if err != nil || d <= 0 {
		t.Skip("soak test: set LAE_SOAK=5m (go tool -modfile=tools/go.mod task soak)")
	}
	dir := t.TempDir()
	srv := newNATSProc(t, dir, "lae-soak", false)
	url := srv.URL
	env := []string{"LAE_NATS_URLS=" + url, "LAE_LOG_LEVEL=info", "LAE_DETECTOR_BATCH_SIZE=8"}
	start := func(name, role string) *proc { return startRole(t, dir, name, env, role) }
	ingest, agg := start("ingest", "ingest"), start("aggregate", "aggregate")
	steady := start("detect-a", "detect")
	victim := start("detect-b-0", "detect")

	clips := []string{filepath.Join(dir, "a.mp4"), filepath.Join(dir, "b.mp4")}
	writeVideo(t, clips[0], true)
	writeVideo(t, clips[1], false)

	rep := soakReport{Duration: d.String(), Samples: map[string][]soakSample{}}
	began := time.Now()
	sample := func() {
		for name, p := range map[string]*proc{"ingest": ingest, "aggregate": agg, "detect-a": steady} {
			body, code, err := httpGet("http://" + p.http + "/metrics")
			if err != nil || code != 200 {
				continue // NATS may be down; the endpoint is not, but be lenient
			}
			val := func(re *regexp.Regexp) float64 {
				m := re.FindStringSubmatch(body)
				if m == nil {
					return 0
				}
				v, _ := strconv.ParseFloat(m[1], 64)
				return v
			}
			rep.Samples[name] = append(rep.Samples[name], soakSample{At: time.Since(began).Seconds(),
				RSSMiB: val(rssRe) / (1 << 20), Goroutines: val(goroutinesRe)})
		}
	}
	var ids []string
	nextKill, nextNATS, nextSample := time.Now().Add(40*time.Second), time.Now().Add(90*time.Second), time.Now()
	for i := 0; time.Since(began) < d; i++ {
		out, _, code := runLae(t, time.Minute, "submit", "--nats", url, "--json", "--timeout", "5s", clips[i%2])
		var r laev1.SubmitReply
		if code == 0 && json.Unmarshal([]byte(out), &r) == nil && r.VideoID != "" {
			ids = append(ids, r.VideoID)
		} else {
			rep.Refused++ // refused up front (NATS down): the client knows, nothing is lost
		}
		now := time.Now()
		if now.After(nextKill) {
			require.NoError(t, victim.cmd.Process.Kill())
			rep.DetectorKills++
			victim = start(fmt.Sprintf("detect-b-%d", rep.DetectorKills), "detect")
			nextKill = now.Add(40 * time.Second)
		}
		if now.After(nextNATS) {
			srv.kill()
			time.Sleep(5 * time.Second) // the outage itself
			rep.NATSRestarts++
			srv.start()
			nextNATS = time.Now().Add(90 * time.Second)
		}
		if now.After(nextSample) {
			sample()
			nextSample = now.Add(15 * time.Second)
		}
	}
	rep.Submitted = len(ids)
	require.NotEmpty(t, ids)

	// Every accepted video ends final; watch them all.
	args := append([]string{"watch", "--nats", url, "--json", "--timeout", "5m"}, ids...)
	out, stderr, code := runLae(t, 6*time.Minute, args...)
	final := map[string]laev1.Verdict{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		var v laev1.Verdict
		if json.Unmarshal([]byte(l), &v) == nil && v.Final {
			final[v.VideoID] = v
		}
	}
	rep.Final = len(final)
	for _, v := range final {
		if v.Verdict == laev1.VerdictError {
			rep.Errors++
			t.Logf("error verdict %s: %s", v.VideoID, v.Error)
		}
	}
	rep.Pending = len(ids) - len(final)
	sample()
	rep.RSSGrowthMiB, rep.GoroutineGrowth = map[string]float64{}, map[string]float64{}
	for name, s := range rep.Samples {
		if len(s) >= 3 {
			// From the second sample (warm) to the last.
			rep.RSSGrowthMiB[name] = s[len(s)-1].RSSMiB - s[1].RSSMiB
			rep.GoroutineGrowth[name] = s[len(s)-1].Goroutines - s[1].Goroutines
		}
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("soak: %s", b)
	if p := os.Getenv("SOAK_OUT"); p != "" {
		require.NoError(t, os.WriteFile(p, b, 0o644))
	}
	require.Equal(t, 0, code, "watch: %s", stderr)
	require.Zero(t, rep.Pending, "videos left without a final verdict")
	require.Zero(t, rep.Errors, "videos failed by the faults")
	names := make([]string, 0, len(rep.RSSGrowthMiB))
	for n := range rep.RSSGrowthMiB {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		require.Less(t, rep.RSSGrowthMiB[n], 64.0, "%s RSS grows", n)
		require.Less(t, rep.GoroutineGrowth[n], 50.0, "%s goroutines grow", n)
	}
}
