package source

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/asticode/go-astiav"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
)

// matrixBytes is a display matrix as FFmpeg stores it: nine native-endian int32.
func matrixBytes(m [9]int32) []byte {
	b := make([]byte, 36)
	for i, v := range m {
		binary.NativeEndian.PutUint32(b[4*i:], uint32(v))
	}
	return b
}

// ffmpegMatrix is av_display_rotation_set(rotation), then av_display_matrix_flip's hflip
// (negate the first column) when mirror: how FFmpeg itself builds these matrices.
func ffmpegMatrix(rotation float64, mirror bool) [9]int32 {
	dm := astiav.NewDisplayMatrixFromRotation(rotation)
	var m [9]int32
	for i, v := range dm {
		m[i] = int32(v)
	}
	if mirror {
		m[0], m[3], m[6] = -m[0], -m[3], -m[6]
	}
	return m
}

const one = 1 << 16 // 1.0 in the matrix's 16.16 fixed point

func TestOrientationOf(t *testing.T) {
	tests := []struct {
		name string
		sd   []byte
		want orientation
	}{
		{"none", nil, orientation{}},
		{"short", make([]byte, 20), orientation{}},
		{"all zero", make([]byte, 36), orientation{}},
		{"identity", matrixBytes([9]int32{one, 0, 0, 0, one, 0, 0, 0, 1 << 30}), orientation{}},
		// What an iPhone held upright writes (tkhd matrix 0 1 0 / -1 0 0 / 1080 0 1), which
		// ffprobe reports as "rotation of -90.00 degrees" and players turn clockwise.
		{"iPhone portrait", matrixBytes([9]int32{0, one, 0, -one, 0, 0, 1080 * one, 0, 1 << 30}), orientation{quarter: 1}},
		{"iPhone upside down", matrixBytes([9]int32{-one, 0, 0, 0, -one, 0, 1920 * one, 1080 * one, 1 << 30}), orientation{quarter: 2}},
		{"iPhone portrait, home button up", matrixBytes([9]int32{0, -one, 0, one, 0, 0, 0, 1920 * one, 1 << 30}), orientation{quarter: 3}},
		// The mov demuxer turns a scaled matrix into a sample aspect ratio; the sign pattern is
		// what decides the orientation.
		{"scaled turn", matrixBytes([9]int32{0, 2 * one, 0, -one / 2, 0, 0, 0, 0, 1 << 30}), orientation{quarter: 1}},
		{"80 degrees snaps to 90", matrixBytes(ffmpegMatrix(80, false)), orientation{quarter: 1}},
		{"-100 degrees snaps to 270", matrixBytes(ffmpegMatrix(-100, false)), orientation{quarter: 3}},
		{"mirror", matrixBytes([9]int32{-one, 0, 0, 0, one, 0, 0, 0, 1 << 30}), orientation{mirror: true}},
		{"upside down, not turned (vflip)", matrixBytes([9]int32{one, 0, 0, 0, -one, 0, 0, 0, 1 << 30}), orientation{quarter: 2, mirror: true}},
		{"transpose", matrixBytes([9]int32{0, one, 0, one, 0, 0, 0, 0, 1 << 30}), orientation{quarter: 1, mirror: true}},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, orientationOf(tc.sd), tc.name)
	}
}

// TestOrientationAgreesWithFFmpeg: for every matrix FFmpeg builds for a turn (and a turn then
// a mirror), the orientation is that turn, and for plain turns FFmpeg's own reading of the
// matrix (av_display_rotation_get, through astiav's clockwise DisplayMatrix.Rotation) agrees.
func TestOrientationAgreesWithFFmpeg(t *testing.T) {
	for _, deg := range []int{0, 90, 180, 270} {
		for _, mirror := range []bool{false, true} {
			m := ffmpegMatrix(float64(deg), mirror)
			o := orientationOf(matrixBytes(m))
			assert.Equal(t, orientation{quarter: deg / 90, mirror: mirror}, o, "%d° mirror %v", deg, mirror)
			if !mirror {
				dm, err := astiav.NewDisplayMatrixFromBytes(matrixBytes(m))
				require.NoError(t, err)
				ff := int(math.Round(dm.Rotation()))
				assert.Equal(t, deg, (ff+360)%360, "FFmpeg's clockwise rotation for %d°", deg)
			}
		}
	}
}

// TestOrientationApplyFollowsTheMatrix checks apply's OpenCV operations against the display
// matrix's definition: the coded pixel (p, q) is shown at (a·p + c·q, b·p + d·q), moved back
// into the frame. A 3x2 picture with distinct pixels tells all eight cases apart.
func TestOrientationApplyFollowsTheMatrix(t *testing.T) {
	const w, h = 3, 2
	for _, deg := range []int{0, 90, 180, 270} {
		for _, mirror := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d mirror %v", deg, mirror), func(t *testing.T) {
				m := ffmpegMatrix(float64(deg), mirror)
				o := orientationOf(matrixBytes(m))
				a, b, c, d := sign(float64(m[0])), sign(float64(m[1])), sign(float64(m[3])), sign(float64(m[4]))
				// Where each coded pixel lands, before moving into the frame.
				type pt struct{ x, y int }
				land := map[pt]pt{}
				minX, minY := math.MaxInt, math.MaxInt
				for q := 0; q < h; q++ {
					for p := 0; p < w; p++ {
						l := pt{a*p + c*q, b*p + d*q}
						land[pt{p, q}] = l
						minX, minY = min(minX, l.x), min(minY, l.y)
					}
				}
				img := gocv.NewMatWithSize(h, w, gocv.MatTypeCV8UC3)
				for q := 0; q < h; q++ {
					for p := 0; p < w; p++ {
						img.SetUCharAt(q, p*3, uint8(10*(q*w+p)+1))
					}
				}
				got, err := o.apply(img) // closes img when it makes a new Mat
				require.NoError(t, err)
				defer got.Close()
				if deg%180 == 90 {
					require.Equal(t, [2]int{h, w}, [2]int{got.Cols(), got.Rows()})
				} else {
					require.Equal(t, [2]int{w, h}, [2]int{got.Cols(), got.Rows()})
				}
				for src, l := range land {
					v := got.GetUCharAt(l.y-minY, (l.x-minX)*3)
					assert.Equal(t, uint8(10*(src.y*w+src.x)+1), v, "coded pixel %v shown at %v", src, pt{l.x - minX, l.y - minY})
				}
			})
		}
	}
}

func TestScaledSize(t *testing.T) {
	r := astiav.NewRational
	tests := []struct {
		name         string
		w, h         int
		sar          astiav.Rational
		maxSide      int
		wantW, wantH int
	}{
		{"square pixels", 640, 360, r(1, 1), 4096, 640, 360},
		{"unknown SAR", 640, 360, r(0, 1), 4096, 640, 360},
		{"2:1 doubles the width", 320, 240, r(2, 1), 4096, 640, 240},
		{"1:2 doubles the height", 320, 240, r(1, 2), 4096, 320, 480},
		{"DVD 16:9", 720, 480, r(32, 27), 4096, 853, 480},
		{"DVD 4:3", 720, 480, r(8, 9), 4096, 720, 540},
		{"absurd SAR ignored", 320, 240, r(1000, 1), 4096, 320, 240},
		{"negative SAR ignored", 320, 240, r(-2, 1), 4096, 320, 240},
		{"8K halved", 7680, 4320, r(1, 1), 4096, 4096, 2304},
		{"4K DCI untouched", 4096, 2160, r(1, 1), 4096, 4096, 2160},
		{"portrait capped", 2160, 8000, r(1, 1), 4096, 1106, 4096},
		{"cap after SAR", 3000, 1000, r(2, 1), 4096, 4096, 683},
		{"no cap", 10000, 100, r(1, 1), -1, 10000, 100},
		{"never zero", 10000, 1, r(1, 1), 100, 100, 1},
	}
	for _, tc := range tests {
		w, h := scaledSize(tc.w, tc.h, tc.sar, tc.maxSide)
		assert.Equal(t, [2]int{tc.wantW, tc.wantH}, [2]int{w, h}, tc.name)
	}
}

func TestCheckPixels(t *testing.T) {
	require.NoError(t, checkPixels(7680, 4320, DefaultMaxFramePixels), "8K UHD")
	require.NoError(t, checkPixels(8192, 4320, DefaultMaxFramePixels), "8K DCI")
	require.NoError(t, checkPixels(100000, 100000, -1), "no limit")
	err := checkPixels(8000, 8000, DefaultMaxFramePixels)
	require.True(t, errors.Is(err, ErrFrameTooLarge))
	assert.Equal(t, "frame too large: 8000x8000 is 64 MP, the limit is 36 MP", err.Error())
}
