package model

import (
	"fmt"
	"math"
	"sync"
)

// This file holds a pure-Go separable resampler. Production uses OpenCV (preprocess.go); this
// one stays as an independent reference that the OpenCV path is checked against, and as the
// baseline BenchmarkPreprocess measures the choice by.

// resampleAxis is a precomputed 1-D resampling filter: dst[i] = sum_k w[i*taps+k] * src[start[i]+k].
// Resizing is separable, so two of these (x and y) describe the whole resize.
type resampleAxis struct {
	taps  int
	start []int
	w     []float32
}

// newResampleAxis builds the filter from n source samples to m destination samples. Shrinking
// uses area averaging (each output pixel is the mean of the source area it covers, like
// OpenCV's INTER_AREA, which is what training uses and what keeps thin forgery artefacts from
// aliasing away); enlarging uses bilinear interpolation with pixel centres aligned (INTER_LINEAR).
func newResampleAxis(n, m int) *resampleAxis {
	a := &resampleAxis{start: make([]int, m)}
	scale := float64(n) / float64(m)
	if scale >= 1 {
		a.taps = int(math.Ceil(scale)) + 1
		a.w = make([]float32, m*a.taps)
		for i := 0; i < m; i++ {
			lo, hi := float64(i)*scale, float64(i+1)*scale
			j0 := int(math.Floor(lo))
			if j0 > n-a.taps {
				j0 = max(n-a.taps, 0)
			}
			a.start[i] = j0
			for k := 0; k < a.taps && j0+k < n; k++ {
				j := float64(j0 + k)
				ov := math.Min(hi, j+1) - math.Max(lo, j)
				if ov > 0 {
					a.w[i*a.taps+k] = float32(ov / scale)
				}
			}
		}
		return a
	}
	a.taps = 2
	a.w = make([]float32, m*2)
	for i := 0; i < m; i++ {
		x := (float64(i)+0.5)*scale - 0.5
		if x < 0 {
			x = 0
		}
		j0 := int(math.Floor(x))
		if j0 >= n-1 {
			j0, x = max(n-2, 0), float64(n-1)
		}
		f := float32(x - float64(j0))
		if n == 1 {
			a.start[i], a.w[i*2] = 0, 1
			continue
		}
		a.start[i] = j0
		a.w[i*2], a.w[i*2+1] = 1-f, f
	}
	return a
}

// axisCache keeps the filters per (source, destination) length: crops of one stream all share a
// size, so the tables are built once.
var axisCache sync.Map // [2]int -> *resampleAxis

func axisFor(n, m int) *resampleAxis {
	key := [2]int{n, m}
	if a, ok := axisCache.Load(key); ok {
		return a.(*resampleAxis)
	}
	a, _ := axisCache.LoadOrStore(key, newResampleAxis(n, m))
	return a.(*resampleAxis)
}

// rowPool recycles the horizontal-pass scratch (height x size x 3 floats) between crops.
var rowPool = sync.Pool{New: func() any { return new([]float32) }}

// preprocessGo resizes one crop to size x size and writes it, normalised and planar (CHW), into
// dst, which must hold 3*size*size floats. Pixel values are rounded to integers after resizing,
// as an 8-bit resize (cv2.resize in training) does, so the model sees the values it was trained on.
func preprocessGo(dst []float32, c Crop, size int, nm normaliser) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if len(dst) != 3*size*size {
		return fmt.Errorf("preprocess: destination holds %d floats, want %d", len(dst), 3*size*size)
	}
	ax, ay := axisFor(c.Width, size), axisFor(c.Height, size)

	// Horizontal pass: every source row -> size pixels, interleaved BGR floats.
	bufp := rowPool.Get().(*[]float32)
	defer rowPool.Put(bufp)
	need := c.Height * size * 3
	if cap(*bufp) < need+size*3 {
		*bufp = make([]float32, need+size*3)
	}
	tmp := (*bufp)[:need]
	line := (*bufp)[need : need+size*3] // one output row, interleaved
	src, w := c.BGR, c.Width
	for y := 0; y < c.Height; y++ {
		row := src[y*w*3 : (y+1)*w*3]
		out := tmp[y*size*3 : (y+1)*size*3]
		for x := 0; x < size; x++ {
			j := ax.start[x]
			ws := ax.w[x*ax.taps : (x+1)*ax.taps]
			var b, g, r float32
			for k, wk := range ws {
				if wk == 0 {
					continue
				}
				p := (j + k) * 3
				b += wk * float32(row[p])
				g += wk * float32(row[p+1])
				r += wk * float32(row[p+2])
			}
			out[x*3], out[x*3+1], out[x*3+2] = b, g, r
		}
	}

	// Vertical pass, rounding and normalisation, written planar in the model's channel order.
	plane := size * size
	p0, p1, p2 := dst[0:plane], dst[plane:2*plane], dst[2*plane:3*plane]
	s0, s1, s2 := nm.srcChan[0], nm.srcChan[1], nm.srcChan[2]
	for y := 0; y < size; y++ {
		j := ay.start[y]
		ws := ay.w[y*ay.taps : (y+1)*ay.taps]
		clear(line)
		for k, wk := range ws {
			if wk == 0 {
				continue
			}
			in := tmp[(j+k)*size*3 : (j+k+1)*size*3]
			for i, v := range in {
				line[i] += wk * v
			}
		}
		o := y * size
		for x := 0; x < size; x++ {
			px := line[x*3 : x*3+3]
			p0[o+x] = round255(px[s0])*nm.scale[0] + nm.shift[0]
			p1[o+x] = round255(px[s1])*nm.scale[1] + nm.shift[1]
			p2[o+x] = round255(px[s2])*nm.scale[2] + nm.shift[2]
		}
	}
	return nil
}

// round255 rounds half up and clamps to the 8-bit range.
func round255(v float32) float32 {
	v = float32(int32(v + 0.5))
	if v > 255 {
		return 255
	}
	if v < 0 {
		return 0
	}
	return v
}
