package report

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"image"
	"image/color"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/aggregator/verdict"
	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// scanned runs the real ingest on path and builds the verdict the way the aggregator does
// (verdict.Compute over one score per published crop; the detector itself is not run: every
// crop scores score, so the verdict's label is known).
func scanned(t *testing.T, path string, score float32) laev1.Verdict {
	t.Helper()
	srv := testenv.StartNATS(t)
	id := laev1.NewVideoID()
	eos, err := pipeline.Run(context.Background(), srv.JS, id, path, pipeline.Options{SampleFPS: 5})
	require.NoError(t, err)
	var scores []*laev1.FrameScore
	if eos.GetCropsPublished() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := srv.JS.Stream(ctx, laev1.StreamFaces)
		require.NoError(t, err)
		cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{laev1.FacesSubject(id)}})
		require.NoError(t, err)
		for uint64(len(scores)) < eos.GetCropsPublished() {
			batch, err := cons.Fetch(int(eos.GetCropsPublished())-len(scores), jetstream.FetchMaxWait(5*time.Second))
			require.NoError(t, err)
			for m := range batch.Messages() {
				var c laev1.FaceCrop
				require.NoError(t, proto.Unmarshal(m.Data(), &c))
				scores = append(scores, &laev1.FrameScore{VideoId: id, FrameIndex: c.GetFrameIndex(), SampleIndex: c.GetSampleIndex(),
					PtsSeconds: c.GetPtsSeconds(), FaceIndex: c.GetFaceIndex(), TrackId: c.GetTrackId(), Box: c.GetBox(),
					Score: score, Model: "lae-test", ModelVersion: "9.9"})
			}
			require.NoError(t, batch.Error())
		}
	}
	v, err := verdict.Compute(eos, scores, verdict.Options{Threshold: 0.5})
	require.NoError(t, err)
	v.CreatedAt = time.Now()
	for i, s := range verdict.TopFrames(scores, 3) {
		v.Evidence = append(v.Evidence, laev1.Evidence{FrameIndex: s.GetFrameIndex(), PTSSeconds: s.GetPtsSeconds(),
			TrackID: s.GetTrackId(), FaceIndex: s.GetFaceIndex(), Score: float64(s.GetScore()), Image: "e" + string(rune('0'+i))})
	}
	return v
}

// testCard writes a model and its card with the figures of an evaluation.
func testCard(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	card := `{"model":{"name":"lae-test","version":"9.9"},"threshold":0.5,
	 "threshold_choice":{"rule":"lowest threshold with <= 5 % false alarms"},
	 "limitations":["Trained on frontal faces only."],
	 "eval":{"video":{"deepfakes_dev_auc":0.9,"deepfakes_dev_auc_per_method":{"A":1.0,"B":0.7},
	  "deepfakes_dev_at_threshold":{"fakes_called_fake":6,"fakes":20,"reals_called_fake":0},
	  "real_clips_false_alarms":{"x_persons":{"clips":20,"called_fake":1},"y_persons":{"clips":5,"called_fake":0}},
	  "photo_clips":{"360p":{"clips":10,"called_fake":0}},"threshold":0.5,"how":"lae scan --json"}}}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "m.card.json"), []byte(card), 0o600))
	return filepath.Join(dir, "m.onnx")
}

// TestScannedClipReportIsARecord is the "must be shown" test: for a clip scanned by
// the real ingest, every field of the forensic record is in the report; for the same clip cut
// short, the report says it is partial and never calls it real.
func TestScannedClipReportIsARecord(t *testing.T) {
	if testing.Short() {
		t.Skip("runs ingest on a generated clip")
	}
	dir := t.TempDir()
	clip := filepath.Join(dir, "speaker.mp4")
	testenv.WriteClip(t, clip, testenv.Clip{Width: 640, Height: 360, Frames: 20, FPS: 5, Tint: color.RGBA{90, 110, 100, 0},
		Face: testenv.LFW, Size: 260, From: image.Pt(200, 60), To: image.Pt(220, 70)})
	data, err := os.ReadFile(clip)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	model := testCard(t)

	v := scanned(t, clip, 0.2)
	require.Equal(t, laev1.VerdictReal, v.Verdict)
	require.True(t, v.Complete)
	require.NotEmpty(t, v.Tracks)
	requireSchemaValid(t, v)
	images := map[string][]byte{}
	for i, e := range v.Evidence {
		images[e.Image] = testJPEG(t, uint8(i))
	}
	out, doc := render(t, v, images, Settings{SampleFPS: 5, SampleFPSSet: true, ModelPath: model, Version: "1.2.3 (commit abc)"})
	requireSelfContained(t, doc)
	require.NotContains(t, out, "ZgotmplZ")
	want := map[string]string{
		"src-input":       clip,
		"src-size":        "bytes",
		"src-sha256":      hex.EncodeToString(sum[:]),
		"src-container":   "mp4",
		"src-codec":       "", // any decoder name
		"src-resolution":  "640×360 shown, 640×360 stored",
		"src-fps":         "5 frames/s",
		"src-duration":    "0:04.000",
		"src-rotation":    "none",
		"src-read":        "whole video",
		"lae-version":     "1.2.3 (commit abc)",
		"model-name":      "lae-test version 9.9",
		"op-detection":    "6 of 20 manipulated clips (deepfakes-dev) called fake: 30.0%",
		"op-false-alarms": "1 of 25 real clips called fake: 4.0%",
		"op-photos":       "0 of 10",
		"op-auc":          "0.900",
		"op-methods":      "B 0.700",
		"known-limits":    "Trained on frontal faces only.",
		"measured-limits": "Weakest on: B (AUC 0.700)",
		"status":          "Real: the video score is below",
		"score":           "0.200",
		"threshold":       "0.500",
		"verdict":         "real",
	}
	for id, s := range want {
		n := byID(doc, id)
		require.NotNil(t, n, "#%s", id)
		got := strings.TrimSpace(text(n))
		require.NotEmpty(t, got, "#%s", id)
		require.NotContains(t, got, "not recorded", "#%s", id)
		require.Contains(t, got, s, "#%s", id)
	}
	require.Contains(t, text(byID(doc, "src-size")), "bytes")
	require.Contains(t, text(byID(doc, "src-size")), strconv.Itoa(len(data)))
	require.Nil(t, byID(doc, "op-mismatch"))
	// Timeline with the threshold line and evidence markers, one lane per track with its
	// evidence, the tracks table and the settings.
	require.NotNil(t, byID(doc, "timeline"))
	require.NotNil(t, byID(doc, "threshold-line"))
	require.Len(t, find(byID(doc, "timeline"), func(n *html.Node) bool { return n.Data == "line" && attr(n, "class") == "ev" }), len(v.Evidence))
	lanes := byID(doc, "track-lanes")
	require.NotNil(t, lanes)
	require.Len(t, find(lanes, func(n *html.Node) bool { return n.Data == "g" && attr(n, "class") == "lane" }), len(v.Tracks))
	require.Len(t, find(lanes, func(n *html.Node) bool { return n.Data == "circle" && attr(n, "class") == "lmark" }), len(v.Evidence))
	require.Len(t, find(byID(doc, "tracks"), byTag("tr")), 1+len(v.Tracks))
	require.Contains(t, text(byID(doc, "settings")), "5 frames/s")
	// Printable.
	require.Contains(t, out, "@page")
	require.Contains(t, out, "@media print")
	require.Contains(t, out, "break-inside:avoid")

	// The same clip cut at 55 %: ingest reads what is there, and the report says partial.
	cut := filepath.Join(dir, "cut.mp4")
	require.NoError(t, os.WriteFile(cut, data[:len(data)*55/100], 0o600))
	v = scanned(t, cut, 0.2)
	require.False(t, v.Complete)
	require.NotNil(t, v.ReadShare)
	_, doc = render(t, v, nil, Settings{ModelPath: model})
	pct := strconv.Itoa(readPercent(*v.ReadShare))
	require.Equal(t, "partial", strings.TrimSpace(text(byID(doc, "verdict"))))
	require.Contains(t, text(byID(doc, "status")), "Partial: only "+pct+"% of the video was read")
	require.Contains(t, text(byID(doc, "src-read")), "partial: only "+pct+"% read")
	require.NotContains(t, strings.ToLower(text(byID(doc, "status"))), "real:")
	require.Contains(t, text(byID(doc, "score")), "0.200")
	t.Logf("cut clip: %s%% read", pct)
}

// TestWording: results that are not a verdict on the whole video are worded as what they are:
// no score for unknown or error, no "real" on a partial or rolling result.
func TestWording(t *testing.T) {
	share := func(f float64) *float64 { return &f }
	base := laev1.Verdict{VideoID: "v1", Input: "x.mp4", Score: 0.3, Threshold: 0.5, Rule: "max_face_mean", Final: true, Complete: true, ReadShare: share(1)}
	cases := []struct {
		name   string
		edit   func(v *laev1.Verdict)
		label  string
		score  bool // a score is shown
		status string
		read   string
	}{
		{"real", func(v *laev1.Verdict) { v.Verdict = laev1.VerdictReal }, "real", true, "Real: the video score is below", "whole video"},
		{"fake", func(v *laev1.Verdict) { v.Verdict, v.Score = laev1.VerdictFake, 0.8 }, "fake", true, "Fake: the video score is at or above", "whole video"},
		{"unknown", func(v *laev1.Verdict) { v.Verdict, v.Score = laev1.VerdictUnknown, 0 }, "unknown", false, "No usable face: there is no score", "whole video"},
		{"error", func(v *laev1.Verdict) {
			v.Verdict, v.Score, v.Complete, v.ReadShare, v.Error = laev1.VerdictError, 0, false, nil, "open x.mp4: no such file"
		}, "error", false, "The scan failed", "not read"},
		{"partial real", func(v *laev1.Verdict) { v.Verdict, v.Complete, v.ReadShare = laev1.VerdictReal, false, share(0.186) }, "partial", true,
			"Partial: only 18% of the video was read. No fake signal in the part read", "partial: only 18% read"},
		{"partial nearly whole", func(v *laev1.Verdict) { v.Verdict, v.Complete, v.ReadShare = laev1.VerdictReal, false, share(0.996) }, "partial", true,
			"only 99% of the video", "partial: only 99% read"},
		{"partial fake", func(v *laev1.Verdict) {
			v.Verdict, v.Score, v.Complete, v.ReadShare = laev1.VerdictFake, 0.9, false, share(0.5)
		}, "fake", true,
			"Fake in the part read. Partial: only 50% of the video was read.", "partial: only 50% read"},
		{"rolling real", func(v *laev1.Verdict) { v.Verdict, v.Final, v.ReadShare = laev1.VerdictReal, false, nil }, "rolling", true,
			"no fake signal so far. Not final; not a verdict of real", "scan in progress"},
		{"rolling fake", func(v *laev1.Verdict) { v.Verdict, v.Final, v.ReadShare, v.Score = laev1.VerdictFake, false, nil, 0.9 }, "rolling", true,
			"fake so far. Not final.", "scan in progress"},
		{"old verdict without completeness", func(v *laev1.Verdict) { v.Verdict, v.Complete, v.ReadShare = laev1.VerdictReal, false, nil }, "real", true,
			"Real:", "whole stream"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := base
			tc.edit(&v)
			out, doc := render(t, v, nil, Settings{})
			require.Equal(t, tc.label, strings.TrimSpace(text(byID(doc, "verdict"))))
			require.Contains(t, text(byID(doc, "status")), tc.status)
			require.Contains(t, text(byID(doc, "src-read")), tc.read)
			if tc.score {
				require.NotNil(t, byID(doc, "score"))
				require.Nil(t, byID(doc, "no-score"))
			} else {
				require.Nil(t, byID(doc, "score"))
				require.Equal(t, "no score", text(byID(doc, "no-score")))
				require.NotContains(t, text(byID(doc, "status"))+text(find(doc, byTag("div"))[0]), "0.000")
			}
			if tc.label != "real" {
				require.NotContains(t, out, `class="badge v-real"`)
			}
			// Without a source or a model path, the record says what it does not know.
			require.Contains(t, text(byID(doc, "src-sha256")), "not recorded")
			require.Contains(t, text(byID(doc, "op-detection")), "not measured")
			require.Contains(t, text(byID(doc, "card-problem")), "not recorded")
		})
	}
}

// TestCardFiguresAtAnotherThreshold: a scan run with a threshold other than the one the card
// measured says its operating point was not measured.
func TestCardFiguresAtAnotherThreshold(t *testing.T) {
	v := fakeVerdict()
	v.Threshold = 0.7
	_, doc := render(t, v, nil, Settings{ModelPath: testCard(t)})
	require.Contains(t, text(byID(doc, "op-mismatch")), "measured at threshold 0.500; this scan used 0.700, whose operating point was not measured")
}

// TestSourceFactsWording covers the network source (no size or hash), rotation and a
// declared duration longer than what a duration limit let ingest read.
func TestSourceFactsWording(t *testing.T) {
	v := fakeVerdict()
	v.Complete, v.ReadShare = true, new(float64)
	*v.ReadShare = 1
	v.FramesDecoded = 125
	v.Source = &laev1.SourceFacts{Container: "hls", Codec: "h264", Width: 720, Height: 1280, CodedWidth: 1280, CodedHeight: 720,
		FPS: 25, DurationSeconds: 60, Rotation: 90, Mirrored: true}
	_, doc := render(t, v, nil, Settings{})
	require.Contains(t, text(byID(doc, "src-sha256")), "not recorded")
	require.Contains(t, text(byID(doc, "src-resolution")), "720×1280 shown, 1280×720 stored")
	require.Equal(t, "90° clockwise, mirrored", text(byID(doc, "src-rotation")))
	require.Equal(t, "the first 0:05.000 of 1:00.000, as asked (a duration limit)", text(byID(doc, "src-read")))
	require.Equal(t, "12345 bytes (12.1 KiB)", fmtBytes(12345))
	require.Equal(t, "999 bytes", fmtBytes(999))
}

// TestTrackLabels: no track is labelled plain "real" in a scan that did not read the whole
// video; unknown tracks show no score.
func TestTrackLabels(t *testing.T) {
	v := fakeVerdict()
	v.Verdict, v.Complete, v.ReadShare = laev1.VerdictReal, false, new(float64)
	*v.ReadShare = 0.4
	v.Tracks = append(v.Tracks, laev1.Track{TrackID: 3, Faces: 2, Verdict: laev1.VerdictUnknown})
	v.Evidence[0].Part = "mouth"
	_, doc := render(t, v, nil, Settings{})
	rows := find(byID(doc, "tracks"), byTag("tr"))
	require.Len(t, rows, 4)
	require.Contains(t, text(rows[2]), "no fake signal in the part read")
	require.NotContains(t, text(byID(doc, "tracks")), "real")
	require.Equal(t, "—", text(find(rows[3], byTag("td"))[2]), "an unknown track has no score")
	require.NotContains(t, text(byID(doc, "track-lanes")), "real")
	require.Equal(t, "mouth", text(find(byID(doc, "evidence"), func(n *html.Node) bool { return attr(n, "class") == "part" })[0]))
}

// requireSchemaValid checks a verdict, source facts included, against verdict.schema.json.
func requireSchemaValid(t *testing.T, v laev1.Verdict) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	testenv.RequireVerdictJSON(t, b)
	require.Contains(t, string(b), `"source":{"file_size":`)
}
