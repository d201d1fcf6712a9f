package worker

import (
	"bytes"
	"image"
	"image/jpeg"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

func TestKeyFromMsgID(t *testing.T) {
	cases := []struct {
		id, subject string
		want        *cropKey
	}{
		{"crop/v1/12/3", "lae.faces.v1", &cropKey{"v1", 12, 3}},
		{"crop/v1/12/3", "", &cropKey{"v1", 12, 3}},
		{"crop/v1/12/3", "lae.faces.other", nil},
		{"crop/v 1/12/3", "", nil},
		{"crop/v1/-1/3", "", nil},
		{"crop/v1/1/99999999999", "", nil},
		{"score/v1/1/2", "", nil},
		{"crop/v1/1", "", nil},
		{"", "lae.faces.v1", nil},
	}
	for _, tc := range cases {
		require.Equal(t, tc.want, keyFromMsgID(tc.id, tc.subject), "%q on %q", tc.id, tc.subject)
	}
}

func TestDecodeCrop(t *testing.T) {
	good := validCrop("v1", 4)
	data, err := proto.Marshal(good)
	require.NoError(t, err)
	j := decodeCrop("lae.faces.v1", nil, data)
	require.Empty(t, j.reason)
	require.Equal(t, &cropKey{"v1", 4, 0}, j.key)
	require.Equal(t, 96, j.img.Width)

	// An empty video id falls back to the subject's.
	noID := validCrop("", 5)
	data, err = proto.Marshal(noID)
	require.NoError(t, err)
	j = decodeCrop("lae.faces.v2", nil, data)
	require.Empty(t, j.reason)
	require.Equal(t, "v2", j.key.videoID)

	// A video id that cannot be a subject token: terminated without a score.
	badID := validCrop("bad id!", 6)
	data, err = proto.Marshal(badID)
	require.NoError(t, err)
	j = decodeCrop("lae.x", nil, data)
	require.Contains(t, j.reason, "invalid video id")
	require.Nil(t, j.key)

	// The subject decides the video: a payload naming another one gets an error score on
	// the subject's video, never a score on the named one.
	for _, other := range []string{"v2", "bad id!"} {
		data, err = proto.Marshal(validCrop(other, 6))
		require.NoError(t, err)
		j = decodeCrop("lae.faces.v1", nil, data)
		require.Contains(t, j.reason, "was published for \"v1\"")
		require.Equal(t, &cropKey{"v1", 6, 0}, j.key)
		require.Nil(t, j.img.BGR)
	}

	// A crop far larger than ingest's is refused (a 4096² BGR crop would be 48 MiB).
	big := validCrop("v1", 8)
	big.Format = laev1.PixelFormat_PIXEL_FORMAT_JPEG
	big.Pixels = jpegDeclaring(t, 2048, 2048)
	data, err = proto.Marshal(big)
	require.NoError(t, err)
	j = decodeCrop("lae.faces.v1", nil, data)
	require.Contains(t, j.reason, "declares 2048x2048")

	// A JPEG that declares an enormous size is refused before OpenCV allocates it.
	bomb := validCrop("v1", 7)
	bomb.Format = laev1.PixelFormat_PIXEL_FORMAT_JPEG
	bomb.Pixels = jpegDeclaring(t, 65535, 65535)
	data, err = proto.Marshal(bomb)
	require.NoError(t, err)
	j = decodeCrop("lae.faces.v1", nil, data)
	require.Contains(t, j.reason, "declares 65535x65535")
	require.NotNil(t, j.key)

	// Garbage with ingest's message id: identity recovered from the id.
	j = decodeCrop("lae.faces.v1", map[string][]string{jetstream.MsgIDHeader: {"crop/v1/9/2"}}, []byte{0xff, 0x01})
	require.Contains(t, j.reason, "malformed crop")
	require.Equal(t, &cropKey{"v1", 9, 2}, j.key)
}

// jpegDeclaring is a valid 8x8 JPEG whose frame header is patched to claim w x h.
func jpegDeclaring(t *testing.T, w, h int) []byte {
	var buf bytes.Buffer
	require.NoError(t, jpeg.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 8, 8)), nil))
	b := buf.Bytes()
	i := bytes.Index(b, []byte{0xff, 0xc0})
	require.Positive(t, i)
	// SOF0: marker(2) length(2) precision(1) height(2) width(2)
	b[i+5], b[i+6], b[i+7], b[i+8] = byte(h>>8), byte(h), byte(w>>8), byte(w)
	return b
}

// FuzzDecodeCrop: whatever arrives on the faces subject, decoding never panics, and a crop it
// accepts is one the model can take.
func FuzzDecodeCrop(f *testing.F) {
	for i, fm := range []laev1.PixelFormat{laev1.PixelFormat_PIXEL_FORMAT_BGR8, laev1.PixelFormat_PIXEL_FORMAT_JPEG, 0} {
		c := validCrop("v1", i)
		c.Format = fm
		data, _ := proto.Marshal(c)
		f.Add(data, "crop/v1/1/0")
	}
	small := &laev1.FaceCrop{VideoId: "v", Width: 2, Height: 1, Format: laev1.PixelFormat_PIXEL_FORMAT_BGR8, Pixels: []byte{1, 2, 3, 4, 5, 6}}
	data, _ := proto.Marshal(small)
	f.Add(data, "")
	f.Add([]byte{0x0a, 0xff}, "crop/x/1/1")
	f.Fuzz(func(t *testing.T, data []byte, msgID string) {
		j := decodeCrop("lae.faces.v1", map[string][]string{jetstream.MsgIDHeader: {msgID}}, data)
		if j.reason == "" {
			require.NoError(t, j.img.Validate())
			require.NotNil(t, j.key)
			require.NoError(t, laev1.ValidateVideoID(j.key.videoID))
		}
		if j.key != nil {
			require.NoError(t, laev1.ValidateVideoID(j.key.videoID))
		}
	})
}

// BenchmarkDecodeCrop is the detector's per-crop message work: a 256x256 BGR crop (what ingest
// publishes) unmarshalled, checked and turned into model input pixels.
func BenchmarkDecodeCrop(b *testing.B) {
	c := validCrop("bench", 1)
	c.Width, c.Height, c.Pixels = 256, 256, solidBGR(256, 256, 10, 20, 30)
	data, err := proto.Marshal(c)
	if err != nil {
		b.Fatal(err)
	}
	subject := laev1.FacesSubject("bench")
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if j := decodeCrop(subject, nil, data); j.reason != "" {
			b.Fatal(j.reason)
		}
	}
}
