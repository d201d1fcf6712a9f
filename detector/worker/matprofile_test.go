//go:build matprofile

package worker

import (
	"testing"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
	"google.golang.org/protobuf/proto"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestDecodeFreesMats runs with `go test -tags matprofile`: decoding JPEG and PNG crops, good
// or broken, leaves no Mat alive.
func TestDecodeFreesMats(t *testing.T) {
	jpg := encode(t, ".jpg", 64, 64, 1, 2, 3)
	png := encode(t, ".png", 64, 64, 1, 2, 3)
	before := gocv.MatProfile.Count()
	for _, tc := range []struct {
		f  laev1.PixelFormat
		px []byte
	}{
		{laev1.PixelFormat_PIXEL_FORMAT_JPEG, jpg},
		{laev1.PixelFormat_PIXEL_FORMAT_PNG, png},
		{laev1.PixelFormat_PIXEL_FORMAT_JPEG, jpg[:len(jpg)/2]},
		{laev1.PixelFormat_PIXEL_FORMAT_PNG, []byte("junk")},
	} {
		c := validCrop("v1", 1)
		c.Format, c.Pixels = tc.f, tc.px
		data, err := proto.Marshal(c)
		require.NoError(t, err)
		for i := 0; i < 10; i++ {
			decodeCrop("lae.faces.v1", nil, data)
		}
	}
	require.Equal(t, before, gocv.MatProfile.Count(), "live Mats after decoding")
}
