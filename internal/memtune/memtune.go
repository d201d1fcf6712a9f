// Package memtune sets the process's allocators for lae's memory profile: many short-lived,
// large buffers (decoded frames, crops, tensors) allocated from several threads at once, in Go
// and in C (OpenCV, FFmpeg, ONNX Runtime).
//
// Two defaults cost peak memory with that profile (bench: `task bench`, scan_peak_rss_mb):
// glibc gives each allocating thread its own arena (up to 8 per core), and each arena keeps
// the pages of the buffers freed in it; Go lets the heap grow to twice what is live before
// collecting. Apply caps the arenas at two and collects at 1.5 times the live heap. The
// standard variables (MALLOC_ARENA_MAX, GOGC) still win when set.
package memtune

/*
#include <malloc.h>
#include <stdlib.h>

// lae_arena_max is the cap set at load time, 0 when MALLOC_ARENA_MAX was set or mallopt failed.
static int lae_arena_max = 0;

// A constructor runs when the executable is loaded, before the Go runtime and the C++
// libraries start their threads: arenas those threads created earlier would stay.
__attribute__((constructor)) static void lae_cap_arenas(void) {
	const int n = 2;
	if (getenv("MALLOC_ARENA_MAX") == NULL && mallopt(M_ARENA_MAX, n) == 1) {
		lae_arena_max = n;
	}
}

static int lae_arenas_capped(void) { return lae_arena_max; }
*/
import "C"

import (
	"os"
	"runtime/debug"
)

// gcPercent is Go's GOGC for lae.
const gcPercent = 50

// Settings says what Apply changed.
type Settings struct {
	// ArenaMax is the arena cap set (0 = left as MALLOC_ARENA_MAX or glibc's default).
	ArenaMax int
	// GCPercent is the GOGC set (0 = left as GOGC or Go's default).
	GCPercent int
}

// Apply sets Go's collector unless GOGC does, and reports both settings. The arena cap is set
// when the package is linked in, at load time (an import is enough), unless
// MALLOC_ARENA_MAX is set.
func Apply() Settings { return apply(os.Getenv) }

func apply(getenv func(string) string) Settings {
	s := Settings{ArenaMax: int(C.lae_arenas_capped())}
	if getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
		s.GCPercent = gcPercent
	}
	return s
}
