// Package track links face boxes across sampled frames into tracks with an IoU tracker: each new
// box joins the live track whose last box overlaps it most (at least Threshold IoU), greedily in
// order of decreasing overlap, and a track that goes MaxMissed frames without a box expires.
// Faces in screening clips move little between sampled frames, so overlap is enough and no
// appearance model is needed.
package track

import (
	"image"
	"sort"
)

// Defaults for Options.
const (
	DefaultThreshold = 0.3
	DefaultMaxMissed = 5
)

// Options configures a Tracker. Zero values take the defaults.
type Options struct {
	// Threshold is the least IoU between a track's last box and a new box to link them.
	Threshold float64
	// MaxMissed is how many consecutive frames a track may miss before it expires (at 5 sampled
	// fps, the default 5 bridges a second of missed detections).
	MaxMissed int
}

type liveTrack struct {
	id     uint64
	box    image.Rectangle
	missed int
}

// Tracker assigns track ids to boxes frame by frame. Not safe for concurrent use.
type Tracker struct {
	o      Options
	live   []liveTrack
	nextID uint64
}

// New returns a tracker whose first track id is 1 (0 never names a track).
func New(o Options) *Tracker {
	if o.Threshold <= 0 {
		o.Threshold = DefaultThreshold
	}
	if o.MaxMissed <= 0 {
		o.MaxMissed = DefaultMaxMissed
	}
	return &Tracker{o: o, nextID: 1}
}

// Update takes the boxes of the next sampled frame and returns their track ids, in the same
// order. Boxes that match no live track start new tracks.
func (t *Tracker) Update(boxes []image.Rectangle) []uint64 {
	type pair struct {
		iou    float64
		tr, bx int
	}
	var pairs []pair
	for ti, tr := range t.live {
		for bi, b := range boxes {
			if v := IoU(tr.box, b); v >= t.o.Threshold {
				pairs = append(pairs, pair{v, ti, bi})
			}
		}
	}
	// Greedy assignment by decreasing IoU; ties broken by index for determinism.
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].iou != pairs[j].iou {
			return pairs[i].iou > pairs[j].iou
		}
		if pairs[i].tr != pairs[j].tr {
			return pairs[i].tr < pairs[j].tr
		}
		return pairs[i].bx < pairs[j].bx
	})
	ids := make([]uint64, len(boxes))
	usedTrack := make([]bool, len(t.live))
	for _, p := range pairs {
		if usedTrack[p.tr] || ids[p.bx] != 0 {
			continue
		}
		usedTrack[p.tr] = true
		ids[p.bx] = t.live[p.tr].id
		t.live[p.tr].box, t.live[p.tr].missed = boxes[p.bx], 0
	}
	kept := t.live[:0]
	for i, tr := range t.live {
		if !usedTrack[i] {
			tr.missed++
			if tr.missed > t.o.MaxMissed {
				continue
			}
		}
		kept = append(kept, tr)
	}
	t.live = kept
	for bi, b := range boxes {
		if ids[bi] == 0 {
			ids[bi] = t.nextID
			t.live = append(t.live, liveTrack{id: t.nextID, box: b})
			t.nextID++
		}
	}
	return ids
}

// Count is the number of tracks started so far.
func (t *Tracker) Count() uint64 { return t.nextID - 1 }

// IoU is the intersection over union of two rectangles (0 when either is empty).
func IoU(a, b image.Rectangle) float64 {
	in := a.Intersect(b)
	if in.Empty() {
		return 0
	}
	i := float64(in.Dx()) * float64(in.Dy())
	u := float64(a.Dx())*float64(a.Dy()) + float64(b.Dx())*float64(b.Dy()) - i
	return i / u
}
