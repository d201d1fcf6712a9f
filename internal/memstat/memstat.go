// Package memstat measures live memory the way leak tests need it: bytes allocated and not
// freed on the C heap (glibc's mallinfo2: OpenCV Mats, FFmpeg frames, ONNX Runtime tensors)
// plus the Go heap in use. Unlike RSS it does not move when an allocator keeps freed pages.
package memstat

/*
#include <malloc.h>
static size_t lae_c_heap_in_use(void) {
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}
*/
import "C"

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// CHeapInUse is the number of bytes malloc has handed out and not had back (including
// mmap-ed large blocks).
func CHeapInUse() int64 { return int64(C.lae_c_heap_in_use()) }

// GoHeapInUse is the Go heap in use after a garbage collection.
func GoHeapInUse() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapInuse)
}

// RSS is the resident set size of this process, from /proc/self/status (Linux).
func RSS() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, fmt.Errorf("read RSS: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("read RSS: %q: %w", line, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("read RSS: no VmRSS in /proc/self/status")
}
