// Package testenv is the support code the repository's tests share, in one place: where the
// module and the optional shared real-media data set (../shared/data beside the repository,
// see its SOURCES.md) are, the shipped model, generated face clips, an embedded nats-server,
// and the leak tests' measurements (live gocv Mats, RSS, CPU time).
//
// It is imported by tests only (no product code may import it), so it may fail or skip the
// calling test itself. It imports ingest/testvideo, internal/natsembed and internal/memstat;
// those packages' own internal (non _test) tests must therefore not import it.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// RepoRoot is the module's root directory, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// SharedDataDir is ../shared/data beside the repository, and whether it exists.
func SharedDataDir() (string, bool) {
	d := filepath.Join(RepoRoot(), "..", "shared", "data")
	_, err := os.Stat(d)
	return d, err == nil
}

// SharedData returns ../shared/data/<rel> (the directory itself when rel is empty), or skips
// the test with a clear message when it is absent: the data set is optional.
//
// Only the path given is checked: a test that must fail, not skip, when the data set is
// present but lacks a file joins that file onto SharedData(tb).
func SharedData(tb testing.TB, rel ...string) string {
	tb.Helper()
	d, _ := SharedDataDir()
	p := filepath.Join(append([]string{d}, rel...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared data %s not present (%v): skipping (see ../shared/data/SOURCES.md)", p, err)
	}
	return p
}

// ShippedModelPath is the release model, detector/models/lae-v2.onnx (committed).
func ShippedModelPath() string {
	return filepath.Join(RepoRoot(), "detector", "models", "lae-v2.onnx")
}

// TinyModelPath is the runtime test fixture detector/testdata/tiny.onnx: a model with the
// release model's inputs and outputs whose score is a simple function of the colours.
func TinyModelPath() string {
	return filepath.Join(RepoRoot(), "detector", "testdata", "tiny.onnx")
}

// ShippedModel is the release model's path; the test fails when it is not committed.
func ShippedModel(tb testing.TB) string {
	tb.Helper()
	p := ShippedModelPath()
	if _, err := os.Stat(p); err != nil {
		tb.Fatalf("the shipped model must be committed: %v", err)
	}
	return p
}

// ServingModel is the shipped model when it is committed, else (logged) the tiny runtime
// fixture: for tests of the serving paths, not of the model's accuracy.
func ServingModel(tb testing.TB) string {
	tb.Helper()
	if p := ShippedModelPath(); fileExists(p) {
		return p
	}
	tb.Log("detector/models/lae-v2.onnx not committed: using the runtime fixture detector/testdata/tiny.onnx")
	return TinyModelPath()
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// CPUTime is the CPU time this process has used, all threads (ONNX Runtime's and cgo's
// included), or 0 when it cannot be read. On a shared machine wall-clock throughput swings
// with the neighbours' load; work per CPU-second does not, so benchmarks report both.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
