package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestUsageErrorsExitTwo: every bad option is a one-line error naming the flag, exit status
// 2, before the model is loaded or NATS started (that takes seconds; these take a fraction
// of one: the elapsed times are logged).
func TestUsageErrorsExitTwo(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	port := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	clip := filepath.Join(t.TempDir(), "clip.mp4") // never opened: validation comes first
	cases := []struct {
		args []string
		flag string
	}{
		{[]string{"scan", "--rule", "bogus", clip}, "--rule bogus"},
		{[]string{"scan", "--threshold", "1.5", clip}, "--threshold 1.5"},
		{[]string{"scan", "--topk", "-5", clip}, "--topk -5"},
		{[]string{"scan", "--fps", "-2", clip}, "--fps -2"},
		{[]string{"scan", "--nats-port", port, clip}, "--nats-port"},
		{[]string{"scan", clip, "--provider", "gpu"}, "--provider gpu"},
		{[]string{"scan", "--bogus", clip}, "bogus"},
		{[]string{"scan"}, "no input"},
		{[]string{"serve", "--nats-port", port}, "--nats-port"},
		{[]string{"serve", "--http", "127.0.0.1:" + port}, "--http"},
		{[]string{"serve", "--api-only", "--nats", ""}, "--nats"},
		{[]string{"aggregate", "--nats", "nats://127.0.0.1:1", "--http", "", "--config", filepath.Join(t.TempDir(), "none.yaml")}, "none.yaml"},
		{[]string{"bogus"}, "unknown command"},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			start := time.Now()
			stdout, stderr, code := runLae(t, 30*time.Second, tc.args...)
			took := time.Since(start)
			t.Logf("exit %d after %s: %s", code, took.Round(time.Millisecond), strings.TrimSpace(stderr))
			require.Equal(t, 2, code, "stdout %q stderr %q", stdout, stderr)
			require.Empty(t, stdout)
			require.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, "one line: %q", stderr)
			require.Contains(t, stderr, tc.flag)
			require.NotContains(t, stderr, "lae scan: lae scan", "no doubled prefix")
			// Loading the model and starting the stack take seconds even on an idle machine;
			// this bound only shows that neither happened (the figure is in the log above).
			require.Less(t, took, 10*time.Second)
		})
	}
}

// TestHelpAndVersion: help goes to stdout with exit 0 and every default, version names the
// build and the shipped model.
func TestHelpAndVersion(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"scan", "--help"}, {"serve", "-h"}, {"detect", "--help"}} {
		stdout, stderr, code := runLae(t, 30*time.Second, args...)
		require.Equal(t, 0, code, "%v: %s", args, stderr)
		require.Empty(t, stderr, "%v", args)
		require.Contains(t, stdout, "usage: lae", "%v", args)
	}
	stdout, _, _ := runLae(t, 30*time.Second, "scan", "--help")
	for _, want := range []string{"--threshold float", "(default 0)", "--fps float", "(default 5)", "--json", "--nats-port int", "--min-eye-px"} {
		require.Contains(t, stdout, want)
	}
	for _, args := range [][]string{{"--version"}, {"version"}} {
		stdout, stderr, code := runLae(t, 30*time.Second, args...)
		require.Equal(t, 0, code, stderr)
		require.Regexp(t, `^lae \S+ \(commit \S+, go1\.\d+`, stdout)
		require.Contains(t, stdout, "model lae-v2 ")
	}
}

// TestScanDirectoryAndStdin: a directory is scanned recursively for media files only; "-"
// reads a video from stdin.
func TestScanDirectoryAndStdin(t *testing.T) {
	dir := t.TempDir()
	writeVideo(t, filepath.Join(dir, "a.mp4"), true)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "sub", ".hidden"), 0o755))
	writeVideo(t, filepath.Join(dir, "sub", "b.MKV"), false)
	writeVideo(t, filepath.Join(dir, "sub", ".hidden", "c.mp4"), false)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not media"), 0o644))

	stdout, stderr, code := runLae(t, 3*time.Minute, "scan", dir, "--json")
	require.Equal(t, 0, code, stderr)
	res := decodeResults(t, stdout)
	require.Len(t, res, 2, stdout)
	require.Equal(t, filepath.Join(dir, "a.mp4"), res[0].Input)
	require.Equal(t, filepath.Join(dir, "sub", "b.MKV"), res[1].Input)
	require.Contains(t, []string{laev1.VerdictReal, laev1.VerdictFake}, res[0].Verdict.Verdict, res[0].Error)
	require.Equal(t, laev1.VerdictUnknown, res[1].Verdict.Verdict)

	_, stderr, code = runLae(t, 30*time.Second, "scan", filepath.Join(dir, "sub", ".hidden", ".."+"/../notes.txt"), "--json")
	require.Equal(t, 1, code, "a non-media file named explicitly is scanned, and fails: %s", stderr)

	f, err := os.Open(filepath.Join(dir, "a.mp4"))
	require.NoError(t, err)
	defer f.Close()
	cmd := exec.Command(laeBin, "scan", "--json", "-")
	cmd.Dir, cmd.Stdin = testenv.RepoRoot(), f
	out, err := cmd.Output()
	require.NoError(t, err)
	res = decodeResults(t, string(out))
	require.Len(t, res, 1)
	require.Equal(t, "-", res[0].Input)
	require.NotZero(t, res[0].Faces, "the clip read from stdin was scanned")
}

// TestScanInterruptPrintsPartialResults: Ctrl-C during a scan prints each unfinished input
// with final false and exits 130, promptly.
func TestScanInterruptPrintsPartialResults(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, "long.mp4")
	writeLongVideo(t, long, 600)
	cmd := exec.Command(laeBin, "scan", "--json", "--fps", "0", "--log-level", "info", "--log-format", "json", long, long)
	cmd.Dir = testenv.RepoRoot()
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	// Interrupt once ingest has started on the first input.
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		if strings.Contains(lines.Text(), `"ingest started"`) {
			break
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	go func() {
		for lines.Scan() {
		}
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		_ = cmd.Process.Kill()
		t.Fatal("lae scan did not stop within a minute of SIGINT")
	}
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 130, ee.ExitCode())
	res := decodeResults(t, stdout.String())
	require.Len(t, res, 2, "every input is reported: %s", stdout.String())
	for _, r := range res {
		require.False(t, r.Final, "%+v", r.Verdict)
		require.Contains(t, r.Error, "interrupted")
	}
}

func decodeResults(t *testing.T, stdout string) []scanResult {
	t.Helper()
	var out []scanResult
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r scanResult
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r), "line %q", sc.Text())
		out = append(out, r)
	}
	return out
}
