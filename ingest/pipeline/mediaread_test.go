package pipeline

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/source"
)

func TestMediaRead(t *testing.T) {
	file := source.Info{Duration: 10 * time.Second, FPS: 25}
	cases := []struct {
		name           string
		info           source.Info
		max            time.Duration
		lastPTS        float64
		decoded        uint64
		expected, read float64
	}{
		{"whole file", file, 0, 9.8, 250, 10, 10},
		{"last frames not sampled", file, 0, 9.0, 250, 10, 10},
		{"cut short", file, 0, 5.8, 150, 10, 6},
		{"max duration caps the expectation", file, 4 * time.Second, 3.8, 100, 4, 4},
		{"live: nothing expected", source.Info{Live: true, FPS: 30}, 0, 59.9, 1800, 0, 60},
		{"no frame rate", source.Info{Duration: 3 * time.Second}, 0, 2.9, 0, 3, 2.9},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e, r := mediaRead(tc.info, tc.max, tc.lastPTS, tc.decoded)
			require.InDelta(t, tc.expected, e, 1e-9)
			require.InDelta(t, tc.read, r, 1e-9)
		})
	}
}
