package testenv

import (
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/lae-screening/lae/internal/memstat"
)

// LiveMats is the number of gocv Mats not yet closed, and whether that number is exact: it
// is only with -tags matprofile (gocv's MatProfile); without the tag it is (0, false) and a
// leak test checks what else it can and says the count was not checked.
func LiveMats() (n int, exact bool) { return liveMats() }

// RSS is this process's resident set size. The test fails when it cannot be read (memstat
// reads /proc/self/status: Linux, like the glibc heap counters the leak tests use with it).
func RSS(tb testing.TB) int64 {
	tb.Helper()
	rss, err := memstat.RSS()
	if err != nil {
		tb.Fatalf("leak test needs the resident set size: %v", err)
	}
	return rss
}

// SettledRSS is RSS after a garbage collection that returns freed Go memory to the system,
// so that garbage not yet collected does not read as growth.
func SettledRSS(tb testing.TB) int64 {
	tb.Helper()
	runtime.GC()
	debug.FreeOSMemory()
	return RSS(tb)
}
