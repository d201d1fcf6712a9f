package memtune

import (
	"os"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestApply(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	// The cap was set at load unless the test runs with MALLOC_ARENA_MAX.
	arenas := 2
	if os.Getenv("MALLOC_ARENA_MAX") != "" {
		arenas = 0
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		want   Settings
		wantGC int
	}{
		{"defaults", nil, Settings{ArenaMax: arenas, GCPercent: gcPercent}, gcPercent},
		{"GOGC set", map[string]string{"GOGC": "200"}, Settings{ArenaMax: arenas}, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			debug.SetGCPercent(100)
			got := apply(func(k string) string { return tc.env[k] })
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.wantGC, debug.SetGCPercent(100), "GOGC in effect")
		})
	}
}
