package track

import (
	"image"
	"testing"

	"github.com/stretchr/testify/require"
)

func box(x, y, s int) image.Rectangle { return image.Rect(x, y, x+s, y+s) }

func TestUpdate(t *testing.T) {
	cases := []struct {
		name   string
		opts   Options
		frames [][]image.Rectangle
		want   [][]uint64
		count  uint64
	}{
		{
			name:   "one face drifting keeps its id",
			frames: [][]image.Rectangle{{box(100, 100, 50)}, {box(105, 102, 50)}, {box(110, 104, 52)}},
			want:   [][]uint64{{1}, {1}, {1}},
			count:  1,
		},
		{
			name:   "two faces swap order in the detector output",
			frames: [][]image.Rectangle{{box(0, 0, 50), box(300, 0, 50)}, {box(302, 1, 50), box(2, 1, 50)}},
			want:   [][]uint64{{1, 2}, {2, 1}},
			count:  2,
		},
		{
			name:   "jump beyond threshold starts a new track",
			frames: [][]image.Rectangle{{box(0, 0, 50)}, {box(200, 200, 50)}},
			want:   [][]uint64{{1}, {2}},
			count:  2,
		},
		{
			name:   "missed frames within the limit keep the track",
			opts:   Options{MaxMissed: 2},
			frames: [][]image.Rectangle{{box(0, 0, 50)}, {}, {}, {box(3, 3, 50)}},
			want:   [][]uint64{{1}, {}, {}, {1}},
			count:  1,
		},
		{
			name:   "track expires after MaxMissed",
			opts:   Options{MaxMissed: 2},
			frames: [][]image.Rectangle{{box(0, 0, 50)}, {}, {}, {}, {box(3, 3, 50)}},
			want:   [][]uint64{{1}, {}, {}, {}, {2}},
			count:  2,
		},
		{
			name:   "two boxes on one track: the better overlap wins, the other starts a track",
			frames: [][]image.Rectangle{{box(0, 0, 100)}, {box(30, 30, 100), box(2, 2, 100)}},
			want:   [][]uint64{{1}, {2, 1}},
			count:  2,
		},
		{
			name:   "empty boxes never match",
			frames: [][]image.Rectangle{{{}}, {{}}},
			want:   [][]uint64{{1}, {2}},
			count:  2,
		},
		{
			name: "threshold is inclusive",
			opts: Options{Threshold: 0.5},
			// 100x100 inside 100x200: IoU = 10000/20000 = 0.5 exactly.
			frames: [][]image.Rectangle{{image.Rect(0, 0, 100, 100)}, {image.Rect(0, 0, 100, 200)}},
			want:   [][]uint64{{1}, {1}},
			count:  1,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := New(tc.opts)
			for i, f := range tc.frames {
				got := tr.Update(f)
				require.Equal(t, len(f), len(got))
				if len(tc.want[i]) == 0 {
					require.Empty(t, got, "frame %d", i)
					continue
				}
				require.Equal(t, tc.want[i], got, "frame %d", i)
			}
			require.Equal(t, tc.count, tr.Count())
		})
	}
}

func TestIoU(t *testing.T) {
	cases := []struct {
		a, b image.Rectangle
		want float64
	}{
		{box(0, 0, 10), box(0, 0, 10), 1},
		{box(0, 0, 10), box(10, 0, 10), 0},
		{box(0, 0, 10), box(5, 0, 10), 50.0 / 150},
		{image.Rectangle{}, box(0, 0, 10), 0},
	}
	for _, tc := range cases {
		require.InDelta(t, tc.want, IoU(tc.a, tc.b), 1e-12)
	}
}

func BenchmarkUpdate(b *testing.B) {
	tr := New(Options{})
	frame := []image.Rectangle{box(0, 0, 50), box(100, 0, 50), box(200, 0, 50), box(300, 0, 50)}
	for i := 0; i < b.N; i++ {
		for j := range frame {
			frame[j] = frame[j].Add(image.Pt(1, 0))
		}
		tr.Update(frame)
	}
}
