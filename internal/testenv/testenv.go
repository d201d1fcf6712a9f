// Package testenv locates what tests need outside the repository: the shared real-media data
// set (../shared/data beside the repository, see its SOURCES.md). It is imported by tests only.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
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
func SharedData(tb testing.TB, rel ...string) string {
	tb.Helper()
	d, _ := SharedDataDir()
	p := filepath.Join(append([]string{d}, rel...)...)
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("shared data %s not present (%v): skipping (see ../shared/data/SOURCES.md)", p, err)
	}
	return p
}
