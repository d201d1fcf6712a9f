package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"image"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/ingest/align"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// fetchAll reads every message of subject in stream with an ordered consumer.
func fetchAll(t testing.TB, js jetstream.JetStream, stream, subject string) []jetstream.Msg {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	want := int(info.State.Subjects[subject])
	if want == 0 {
		for _, n := range info.State.Subjects {
			want += int(n)
		}
	}
	if want == 0 {
		return nil
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	require.NoError(t, err)
	var out []jetstream.Msg
	for len(out) < want {
		batch, err := cons.Fetch(want-len(out), jetstream.FetchMaxWait(5*time.Second))
		require.NoError(t, err)
		for m := range batch.Messages() {
			out = append(out, m)
		}
		require.NoError(t, batch.Error())
	}
	return out
}

func lastEOS(t testing.TB, js jetstream.JetStream, videoID string) *laev1.EndOfStream {
	msgs := fetchAll(t, js, laev1.StreamScores, laev1.EOSSubject(videoID))
	require.Len(t, msgs, 1, "exactly one end-of-stream")
	var eos laev1.EndOfStream
	require.NoError(t, proto.Unmarshal(msgs[0].Data(), &eos))
	require.Equal(t, laev1.EOSMsgID(videoID, 0), msgs[0].Headers().Get(jetstream.MsgIDHeader))
	return &eos
}

// checkVideo verifies what Run published for videoID against its EOS.
func checkVideo(t *testing.T, js jetstream.JetStream, videoID string, eos *laev1.EndOfStream) (framesWithFaces int) {
	require.True(t, proto.Equal(eos, lastEOS(t, js, videoID)), "published EOS = returned EOS")
	crops := fetchAll(t, js, laev1.StreamFaces, laev1.FacesSubject(videoID))
	require.Equal(t, int(eos.CropsPublished), len(crops))
	require.Equal(t, eos.Faces, eos.CropsPublished)
	frames := map[uint64]bool{}
	tracks := map[uint64]bool{}
	for _, m := range crops {
		var c laev1.FaceCrop
		require.NoError(t, proto.Unmarshal(m.Data(), &c))
		require.Equal(t, laev1.CropMsgID(videoID, c.FrameIndex, c.FaceIndex), m.Headers().Get(jetstream.MsgIDHeader))
		require.Equal(t, laev1.PixelFormat_PIXEL_FORMAT_BGR8, c.Format)
		require.Equal(t, []uint32{align.CropSize, align.CropSize}, []uint32{c.Width, c.Height})
		require.Len(t, c.Pixels, align.CropSize*align.CropSize*3)
		require.Len(t, c.CropToFrame, 6)
		require.InDelta(t, 1, float64(c.SourceScale)*math.Hypot(c.CropToFrame[0], c.CropToFrame[3]), 1e-4,
			"source_scale %v is 1 / the crop_to_frame scale", c.SourceScale)
		b := c.Box
		require.True(t, b.X >= 0 && b.Y >= 0 && b.W > 0 && b.H > 0 &&
			b.X+b.W <= float32(c.FrameWidth) && b.Y+b.H <= float32(c.FrameHeight), "box %v in %dx%d", b, c.FrameWidth, c.FrameHeight)
		// The crop centre maps into the face box.
		x := c.CropToFrame[0]*128 + c.CropToFrame[1]*128 + c.CropToFrame[2]
		y := c.CropToFrame[3]*128 + c.CropToFrame[4]*128 + c.CropToFrame[5]
		require.True(t, x >= float64(b.X) && x <= float64(b.X+b.W) && y >= float64(b.Y) && y <= float64(b.Y+b.H),
			"crop centre -> %.0f,%.0f outside box %v", x, y, b)
		require.NotZero(t, c.TrackId)
		require.Less(t, c.SampleIndex, eos.FramesSampled)
		frames[c.FrameIndex] = true
		tracks[c.TrackId] = true
	}
	require.Equal(t, int(eos.Tracks), len(tracks))
	imgs := fetchAll(t, js, laev1.StreamFrames, laev1.SubjectFramesPrefix+videoID+".>")
	require.Len(t, imgs, len(frames), "one frame image per frame with faces")
	for _, m := range imgs {
		var fi laev1.FrameImage
		require.NoError(t, proto.Unmarshal(m.Data(), &fi))
		require.True(t, frames[fi.FrameIndex])
		require.Equal(t, []byte{0xff, 0xd8}, fi.Jpeg[:2], "JPEG magic")
	}
	return len(frames)
}

func TestRunRealVideos(t *testing.T) {
	srv := testenv.StartNATS(t)
	cases := []struct {
		name, rel string
		maxDur    time.Duration
	}{
		{"asl", "asl/again.mkv", 0},
		{"hamilton", "hamilton_short.mp4", 3 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := laev1.NewVideoID()
			var last Progress
			eos, err := Run(context.Background(), srv.JS, id, testenv.SharedData(t, "videos", tc.rel), Options{
				SampleFPS: 5, MaxDuration: tc.maxDur, Progress: func(p Progress) { last = p },
			})
			require.NoError(t, err)
			require.Empty(t, eos.Failure)
			require.NotZero(t, eos.FramesSampled)
			require.Greater(t, eos.FramesDecoded, eos.FramesSampled)
			require.NotZero(t, eos.CropsPublished)
			require.Equal(t, eos.FramesSampled, last.FramesSampled)
			require.Equal(t, eos.CropsPublished, last.Faces)
			n := checkVideo(t, srv.JS, id, eos)
			// The source facts for the forensic record: the hash is of the whole file.
			path := testenv.SharedData(t, "videos", tc.rel)
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			sum := sha256.Sum256(b)
			si := eos.GetSource()
			require.NotNil(t, si)
			require.Equal(t, uint64(len(b)), si.GetFileSize())
			require.Equal(t, hex.EncodeToString(sum[:]), si.GetSha256())
			require.NotEmpty(t, si.GetContainer())
			require.NotEmpty(t, si.GetCodec())
			require.NotZero(t, si.GetWidth())
			require.NotZero(t, si.GetCodedHeight())
			require.Positive(t, si.GetFps())
			require.Positive(t, si.GetDurationSeconds())
			require.True(t, proto.Equal(si, lastEOS(t, srv.JS, id).GetSource()), "published EOS carries the source")
			t.Logf("%s: %d sampled, %d with faces, %d crops, %d tracks", tc.rel, eos.FramesSampled, n, eos.CropsPublished, eos.Tracks)
		})
	}
}

// TestRunTwiceDeduplicates re-ingests a video under the same id: JetStream drops the repeated
// crops by message id, so the stream holds one copy and both EOS report the same counts.
func TestRunTwiceDeduplicates(t *testing.T) {
	srv := testenv.StartNATS(t)
	id := laev1.NewVideoID()
	o := Options{SampleFPS: 2, MaxDuration: 2 * time.Second}
	first, err := Run(context.Background(), srv.JS, id, testenv.SharedData(t, "videos", "asl", "yes.mkv"), o)
	require.NoError(t, err)
	second, err := Run(context.Background(), srv.JS, id, testenv.SharedData(t, "videos", "asl", "yes.mkv"), o)
	require.NoError(t, err)
	require.Equal(t, first.CropsPublished, second.CropsPublished)
	checkVideo(t, srv.JS, id, second)
}

func TestRunFailures(t *testing.T) {
	srv := testenv.StartNATS(t)
	dir := t.TempDir()
	html := filepath.Join(dir, "page.avi")
	require.NoError(t, os.WriteFile(html, []byte("<html><body>not a video</body></html>"), 0o600))
	cases := []struct {
		name, url string
		o         Options
	}{
		{"missing file", filepath.Join(dir, "missing.mp4"), Options{}},
		{"unknown scheme", "gopher://example.com/x.mp4", Options{}},
		{"html named avi", html, Options{}},
		{"missing face model", testenv.SharedData(t, "videos", "asl", "yes.mkv"), Options{FaceModel: filepath.Join(dir, "none.onnx")}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := laev1.NewVideoID()
			eos, err := Run(context.Background(), srv.JS, id, tc.url, tc.o)
			require.Error(t, err)
			require.NotEmpty(t, eos.Failure)
			require.Equal(t, err.Error(), eos.Failure)
			require.Zero(t, eos.CropsPublished)
			require.True(t, proto.Equal(eos, lastEOS(t, srv.JS, id)))
			t.Logf("%s: %s", tc.name, eos.Failure)
		})
	}
	_, err := Run(context.Background(), srv.JS, "bad id!", "x.mp4", Options{})
	require.Error(t, err)
}

// TestRunCancelled stops ingest through ctx: the EOS still goes out, with the failure.
func TestRunCancelled(t *testing.T) {
	srv := testenv.StartNATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	id := laev1.NewVideoID()
	eos, err := Run(ctx, srv.JS, id, testenv.SharedData(t, "videos", "hamilton_short.mp4"), Options{
		SampleFPS: 5, Progress: func(p Progress) {
			if p.FramesSampled == 3 {
				cancel()
			}
		},
	})
	require.ErrorIs(t, err, context.Canceled)
	require.NotEmpty(t, eos.Failure)
	// The clip has ~50 samples at 5 fps. The reader runs ahead of the in-order publisher by
	// what the channels and workers hold (a few frames, more when the machine is loaded, as
	// under the race detector), so the bound is "stopped early", not an exact count.
	require.Less(t, eos.FramesSampled, uint64(25))
	checkVideo(t, srv.JS, id, eos)
}

// faceClip writes a 2 s 640x360 clip (10 frames at 5 fps) with one LFW photo drawn width
// pixels wide on a noisy background; the face fills about 60 % of the photo.
func faceClip(t *testing.T, width int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "face.mp4")
	testenv.WriteClip(t, p, testenv.Clip{Width: 640, Height: 360, Frames: 10, FPS: 5, Tint: color.RGBA{90, 110, 100, 0},
		Face: testenv.LFW, Size: width, From: image.Pt(300, 100), To: image.Pt(310, 105)})
	return p
}

// TestRunTinyFaces: a face whose eyes are closer than MinEyePx is counted in FacesTooSmall and
// not published (so the aggregator's completeness count, crops_published, never includes it);
// with the limit off the same faces are published, their source_scale showing the upsampling
// past 4x that the limit refuses; a normal face is unaffected.
func TestRunTinyFaces(t *testing.T) {
	srv := testenv.StartNATS(t)
	run := func(url string, minEyePx float64) (*laev1.EndOfStream, []*laev1.FaceCrop) {
		t.Helper()
		id := laev1.NewVideoID()
		var last Progress
		eos, err := Run(context.Background(), srv.JS, id, url, Options{SampleFPS: 5, MinEyePx: minEyePx, Progress: func(p Progress) { last = p }})
		require.NoError(t, err)
		require.Equal(t, eos.FacesTooSmall, last.FacesTooSmall)
		checkVideo(t, srv.JS, id, eos)
		var out []*laev1.FaceCrop
		for _, m := range fetchAll(t, srv.JS, laev1.StreamFaces, laev1.FacesSubject(id)) {
			var c laev1.FaceCrop
			require.NoError(t, proto.Unmarshal(m.Data(), &c))
			out = append(out, &c)
		}
		return eos, out
	}
	// 32 px photo: eyes about 10 px apart, the crop would upsample them 5-7x.
	tiny := faceClip(t, 32)
	eos, published := run(tiny, DefaultMinEyePx)
	require.Empty(t, published)
	require.Zero(t, eos.Faces)
	require.Zero(t, eos.CropsPublished)
	require.GreaterOrEqual(t, eos.FacesTooSmall, eos.FramesSampled*8/10, "the tiny face is found in most frames and counted")
	require.Zero(t, eos.Tracks, "faces too small are not tracked")

	all, published := run(tiny, 0)
	require.Zero(t, all.FacesTooSmall)
	require.Equal(t, eos.FacesTooSmall, all.CropsPublished, "the same faces, published with the limit off")
	lo, hi := float32(math.Inf(1)), float32(0)
	for _, c := range published {
		require.Greater(t, c.SourceScale, float32(64/DefaultMinEyePx), "frame %d: upsampled more than 4x", c.FrameIndex)
		lo, hi = min(lo, c.SourceScale), max(hi, c.SourceScale)
	}

	normal, published := run(faceClip(t, 200), DefaultMinEyePx)
	require.Zero(t, normal.FacesTooSmall)
	require.GreaterOrEqual(t, normal.CropsPublished, normal.FramesSampled*8/10)
	for _, c := range published {
		require.Less(t, c.SourceScale, float32(1.5), "frame %d", c.FrameIndex)
	}
	t.Logf("tiny: %d too small of %d sampled; limit off: %d published (source scale %.1f-%.1f); normal: %d published",
		eos.FacesTooSmall, eos.FramesSampled, all.CropsPublished, lo, hi, normal.CropsPublished)
}
