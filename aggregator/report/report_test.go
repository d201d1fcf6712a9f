package report

import (
	"bytes"
	"encoding/base64"
	"image"
	"image/color"
	"image/jpeg"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/html"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// testJPEG encodes a small gradient image, so every test image has distinct real bytes.
func testJPEG(t testing.TB, seed uint8) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 32, 24))
	for y := 0; y < 24; y++ {
		for x := 0; x < 32; x++ {
			img.Set(x, y, color.RGBA{R: uint8(x * 8), G: uint8(y * 10), B: seed, A: 255})
		}
	}
	var b bytes.Buffer
	require.NoError(t, jpeg.Encode(&b, img, nil))
	return b.Bytes()
}

func fakeVerdict() laev1.Verdict {
	v := laev1.Verdict{
		VideoID: "v20261126T120000-0011223344556677", Input: "/videos/interview.mp4", Verdict: laev1.VerdictFake,
		Score: 0.83, Threshold: 0.42, Rule: "topk_mean", Model: "lae", ModelVersion: "lae-v1-2026.11", Revision: 1, Final: true,
		FramesDecoded: 250, FramesSampled: 50, FramesWithFace: 40, Faces: 44, CropsScored: 44,
		Tracks: []laev1.Track{
			{TrackID: 1, Faces: 40, Score: 0.83, Verdict: laev1.VerdictFake, FirstPTS: 0, LastPTS: 9.8},
			{TrackID: 2, Faces: 4, Score: 0.1, Verdict: laev1.VerdictReal, FirstPTS: 3.2, LastPTS: 4.0},
		},
		CreatedAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
	}
	for i := 0; i < 50; i++ {
		v.Timeline = append(v.Timeline, laev1.TimelinePoint{FrameIndex: uint64(i * 5), PTSSeconds: float64(i) * 0.2,
			Score: 0.5 + 0.45*math.Sin(float64(i)/5), Faces: 1})
	}
	for i, f := range []uint64{35, 40, 45} {
		v.Evidence = append(v.Evidence, laev1.Evidence{FrameIndex: f, PTSSeconds: float64(f) / 25, TrackID: 1, FaceIndex: 0,
			Score: 0.95 - float64(i)*0.01, FaceBox: laev1.Rect{X: 120, Y: 40, W: 260, H: 260},
			HotRegion: laev1.Rect{X: 180, Y: 120, W: 80, H: 60},
			Image:     laev1.EvidenceObjectName("v20261126T120000-0011223344556677", 1, f, 0)})
	}
	return v
}

// render writes the report and parses it back as HTML.
func render(t *testing.T, v laev1.Verdict, images map[string][]byte, s Settings) (string, *html.Node) {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, Write(&b, v, images, s))
	doc, err := html.Parse(bytes.NewReader(b.Bytes()))
	require.NoError(t, err)
	return b.String(), doc
}

func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if match(n) {
			out = append(out, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return out
}

func byTag(tag string) func(*html.Node) bool {
	return func(n *html.Node) bool { return n.Type == html.ElementNode && n.Data == tag }
}

func byID(doc *html.Node, id string) *html.Node {
	ns := find(doc, func(n *html.Node) bool { return n.Type == html.ElementNode && attr(n, "id") == id })
	if len(ns) != 1 {
		return nil
	}
	return ns[0]
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func text(n *html.Node) string {
	var b strings.Builder
	for _, t := range find(n, func(n *html.Node) bool { return n.Type == html.TextNode }) {
		b.WriteString(t.Data)
	}
	return b.String()
}

func TestFakeVerdictReport(t *testing.T) {
	v := fakeVerdict()
	images := map[string][]byte{}
	for i, e := range v.Evidence {
		images[e.Image] = testJPEG(t, uint8(i*60))
	}
	out, doc := render(t, v, images, Settings{SampleFPS: 5, SampleFPSSet: true, FaceModel: "lbp", Generator: "lae scan"})

	require.Equal(t, "fake", strings.TrimSpace(text(byID(doc, "verdict"))))
	require.Equal(t, "0.830", text(byID(doc, "score")))
	require.Equal(t, "0.420", text(byID(doc, "threshold")))
	settings := text(byID(doc, "settings"))
	for _, want := range []string{"lae-v1-2026.11", "topk_mean", "5 frames/s", "lbp", v.VideoID, "/videos/interview.mp4",
		"250 / 50 / 40", "44 / 44 / 0"} {
		require.Contains(t, settings, want)
	}

	// Timeline: one polyline vertex and one circle per point, and the threshold line at the
	// threshold's height on the plot's 0..1 scale.
	svg := byID(doc, "timeline")
	require.NotNil(t, svg, "timeline svg")
	lines := find(svg, byTag("polyline"))
	require.Len(t, lines, 1)
	require.Len(t, strings.Fields(attr(lines[0], "points")), len(v.Timeline))
	require.Len(t, find(svg, byTag("circle")), len(v.Timeline))
	thr := byID(doc, "threshold-line")
	require.NotNil(t, thr)
	y, err := strconv.ParseFloat(attr(thr, "y1"), 64)
	require.NoError(t, err)
	require.InDelta(t, (plotH-padB)-0.42*(plotH-padB-padT), y, 0.1)
	// Points above the threshold are marked, and there are some on both sides in this verdict.
	above := find(svg, func(n *html.Node) bool { return n.Data == "circle" && strings.Contains(attr(n, "class"), "above") })
	wantAbove := 0
	for _, p := range v.Timeline {
		if p.Score >= v.Threshold {
			wantAbove++
		}
	}
	require.Len(t, above, wantAbove)
	require.Greater(t, wantAbove, 0)
	require.Less(t, wantAbove, len(v.Timeline))

	// Tracks table: a header row and one row per track.
	require.Len(t, find(byID(doc, "tracks"), byTag("tr")), 1+len(v.Tracks))

	// Evidence: every image inline, byte-identical, with its coordinates and time.
	figs := find(byID(doc, "evidence"), byTag("figure"))
	require.Len(t, figs, len(v.Evidence))
	for i, f := range figs {
		imgs := find(f, byTag("img"))
		require.Len(t, imgs, 1)
		src := attr(imgs[0], "src")
		require.True(t, strings.HasPrefix(src, "data:image/jpeg;base64,"), src[:min(len(src), 40)])
		b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(src, "data:image/jpeg;base64,"))
		require.NoError(t, err)
		require.Equal(t, images[v.Evidence[i].Image], b)
		caption := text(f)
		require.Contains(t, caption, "x=120 y=40 w=260 h=260")
		require.Contains(t, caption, "x=180 y=120 w=80 h=60")
		require.Contains(t, caption, fmtSeconds(v.Evidence[i].PTSSeconds))
		require.Contains(t, caption, "frame "+strconv.FormatUint(v.Evidence[i].FrameIndex, 10))
	}
	requireSelfContained(t, doc)
	require.NotContains(t, out, "ZgotmplZ", "html/template rejected a value")
}

// requireSelfContained fails on anything that would load from outside the file.
func requireSelfContained(t *testing.T, doc *html.Node) {
	t.Helper()
	require.Empty(t, find(doc, byTag("script")), "a report has no scripts")
	require.Empty(t, find(doc, byTag("link")), "a report has no linked assets")
	for _, n := range find(doc, func(n *html.Node) bool { return n.Type == html.ElementNode }) {
		for _, a := range n.Attr {
			if a.Key == "src" || a.Key == "href" {
				require.True(t, strings.HasPrefix(a.Val, "data:image/"), "%s %s=%q", n.Data, a.Key, a.Val)
			}
		}
	}
}

func TestHostileInputIsEscaped(t *testing.T) {
	hostile := []string{
		`"><script>alert(1)</script><img src=x onerror=alert(2)>.mp4`,
		`javascript:alert(1)`,
		`</title><style>body{display:none}</style>`,
		"rtsp://user:p&ss@cam/\u202eevil\x00<b>",
	}
	for _, input := range hostile {
		t.Run(input, func(t *testing.T) {
			v := fakeVerdict()
			v.Input = input
			v.Evidence[0].Image = `"><script>x</script>`
			v.Verdict = `fake" onmouseover="alert(3)`
			out, doc := render(t, v, nil, Settings{})
			requireSelfContained(t, doc)
			require.Len(t, find(doc, byTag("style")), 1, "only the report's own style element")
			for _, n := range find(doc, func(n *html.Node) bool { return n.Type == html.ElementNode }) {
				for _, a := range n.Attr {
					require.False(t, strings.HasPrefix(a.Key, "on"), "event handler attribute %s on %s", a.Key, n.Data)
				}
			}
			// The input round-trips as text (the NUL byte aside, which HTML cannot hold).
			want := strings.ReplaceAll(input, "\x00", "\uFFFD")
			require.Equal(t, want, text(byID(doc, "input")))
			require.Contains(t, text(find(doc, byTag("title"))[0]), want)
			require.NotContains(t, out, "<script>")
		})
	}
}

func TestUnknownVerdictWithoutEvidence(t *testing.T) {
	v := laev1.Verdict{VideoID: "vid-unknown", Input: "noface.mp4", Verdict: laev1.VerdictUnknown, Threshold: 0.5,
		Rule: "topk_mean", Model: "lae", ModelVersion: "1", Final: true, FramesDecoded: 100, FramesSampled: 20,
		Tracks: []laev1.Track{}, Evidence: []laev1.Evidence{}}
	_, doc := render(t, v, nil, Settings{SampleFPS: 0, SampleFPSSet: true})
	require.Equal(t, "unknown", strings.TrimSpace(text(byID(doc, "verdict"))))
	require.Nil(t, byID(doc, "timeline"))
	require.NotNil(t, byID(doc, "no-timeline"))
	require.NotNil(t, byID(doc, "no-evidence"))
	require.Nil(t, byID(doc, "evidence"))
	require.Nil(t, byID(doc, "error"))
	require.Contains(t, text(byID(doc, "settings")), "every frame")
	require.Contains(t, text(doc), "Absence of evidence")
	require.Contains(t, text(byID(doc, "unknown-why")), "No usable face")
	require.Nil(t, byID(doc, "faces-too-small"))
	requireSelfContained(t, doc)

	// Faces were there, but all too small to judge: the report says so.
	v.FacesTooSmall = 12
	_, doc = render(t, v, nil, Settings{SampleFPS: 0, SampleFPSSet: true})
	require.Contains(t, text(byID(doc, "unknown-why")), "Faces too small to judge (12)")
	require.Contains(t, text(byID(doc, "faces-too-small")), "12")
}

func TestErrorVerdict(t *testing.T) {
	v := laev1.Verdict{VideoID: "vid-error", Input: "http://example.invalid/x.mp4", Verdict: laev1.VerdictError,
		Error: "open http://example.invalid/x.mp4: <connection refused> & more", Rule: "topk_mean", Final: true}
	_, doc := render(t, v, nil, Settings{})
	require.Equal(t, "error", strings.TrimSpace(text(byID(doc, "verdict"))))
	require.Equal(t, v.Error, text(byID(doc, "error")))
	require.Contains(t, text(byID(doc, "settings")), "not recorded")
	require.Contains(t, text(byID(doc, "no-evidence")), `verdict "error"`)
	requireSelfContained(t, doc)
}

func TestImagesThatAreNotImagesAreNotInlined(t *testing.T) {
	v := fakeVerdict()
	images := map[string][]byte{
		v.Evidence[0].Image: testJPEG(t, 1),
		v.Evidence[1].Image: []byte("<html><script>alert(1)</script></html>"),
		// Evidence[2] has no image at all.
	}
	out, doc := render(t, v, images, Settings{})
	figs := find(byID(doc, "evidence"), byTag("figure"))
	require.Len(t, figs, 3)
	require.Len(t, find(figs[0], byTag("img")), 1)
	require.Empty(t, find(figs[1], byTag("img")))
	require.Empty(t, find(figs[2], byTag("img")))
	require.Contains(t, out, "2 evidence image(s) were not available")
	requireSelfContained(t, doc)
}

func TestNonFiniteNumbersStillRender(t *testing.T) {
	v := fakeVerdict()
	v.Score = math.NaN()
	v.Timeline[3].Score = math.Inf(1)
	v.Timeline[4].PTSSeconds = math.NaN()
	v.Evidence[0].PTSSeconds = math.Inf(-1)
	out, doc := render(t, v, nil, Settings{})
	require.Equal(t, "n/a", text(byID(doc, "score")))
	require.NotContains(t, out, "NaN")
	require.NotContains(t, out, "Inf")
}

func TestFormatting(t *testing.T) {
	for _, c := range []struct {
		in   float64
		want string
	}{{0, "0:00.000"}, {1.5, "0:01.500"}, {61.25, "1:01.250"}, {3725.001, "1:02:05.001"}, {-1, "n/a"}, {math.NaN(), "n/a"}} {
		require.Equal(t, c.want, fmtSeconds(c.in), "fmtSeconds(%v)", c.in)
	}
	for _, c := range []struct{ raw, want float64 }{{0.13, 0.2}, {0.9, 1}, {1.7, 2}, {4, 5}, {33, 50}, {0, 1}} {
		require.InDelta(t, c.want, niceStep(c.raw), 1e-9, "niceStep(%v)", c.raw)
	}
}

// FuzzWrite feeds arbitrary outside strings (input names, errors, model names) through the
// report and checks that they never become markup.
func FuzzWrite(f *testing.F) {
	f.Add(`<script>alert(1)</script>`, "fake", "oops", 0.5)
	f.Add(`" onerror="x`, "real", "", 0.1)
	f.Add("\xff\xfe", "unknown", "</div>", math.NaN())
	f.Fuzz(func(t *testing.T, input, label, errText string, score float64) {
		v := fakeVerdict()
		v.Input, v.Verdict, v.Error, v.Model, v.Score = input, label, errText, input, score
		v.Timeline[0].Score = score
		var b bytes.Buffer
		if err := Write(&b, v, nil, Settings{FaceModel: errText}); err != nil {
			t.Fatalf("write: %v", err)
		}
		doc, err := html.Parse(&b)
		if err != nil {
			t.Fatalf("parse: %v", err)
		}
		if n := len(find(doc, byTag("script"))); n != 0 {
			t.Fatalf("%d script elements from input %q", n, input)
		}
		if n := len(find(doc, byTag("style"))); n != 1 {
			t.Fatalf("%d style elements from input %q", n, input)
		}
	})
}
