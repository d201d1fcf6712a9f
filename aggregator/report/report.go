// Package report writes a self-contained HTML report of one verdict: the verdict and how it
// was reached (score, threshold, rule, model), the scan settings, a plot of the per-frame
// scores, the face tracks, and the evidence frames with their heatmap overlays. The file has
// no external assets (images are inlined as data: URIs, the plot is inline SVG), so it can be
// mailed, archived or opened offline.
package report

import (
	"bytes"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"io"
	"math"
	"net/http"
	"strconv"
	"time"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Settings are the scan facts a verdict does not carry itself.
type Settings struct {
	// Input overrides the verdict's input in the report (e.g. the name of an uploaded file).
	Input string
	// SampleFPS is the sampling rate used; SampleFPSSet says it is known (0 = every frame).
	SampleFPS    float64
	SampleFPSSet bool
	// FaceModel names the face detector (lbp, haar, a YuNet file); "" = not recorded.
	FaceModel string
	// ModelPath is the ONNX file the scores came from; "" = not recorded.
	ModelPath string
	// Generator names what wrote the report (e.g. "lae scan"); "" = "lae".
	Generator string
	// GeneratedAt is the report's time; zero = now.
	GeneratedAt time.Time
	// Version is the lae version that wrote the report; "" = read from the binary's build
	// information.
	Version string
}

//go:embed report.html.tmpl
var pageSource string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"score":      fmtScore,
	"sec":        fmtSeconds,
	"rect":       fmtRect,
	"trackScore": trackScore,
	"trackLabel": trackLabel,
}).Parse(pageSource))

// Plot geometry (SVG user units). The plot scales with the page through viewBox.
const (
	plotW, plotH           = 900.0, 260.0
	padL, padR, padT, padB = 48.0, 16.0, 14.0, 34.0
)

// view is what the template renders; every string in it is escaped by html/template.
type view struct {
	V             laev1.Verdict
	Input         string
	SampleFPS     string
	FaceModel     string
	ModelPath     string
	Generator     string
	GeneratedAt   string
	CreatedAt     string
	Plot          *plot
	Evidence      []evidenceView
	MissingImages int
	Version       string
	Status        status
	Source        []fact // the input's forensic facts, in display order
	Card          cardView
	Lanes         *lanes
}

// fact is one labelled row of the source table; Missing prints the value greyed.
type fact struct {
	ID, Label, Value string
	Missing          bool
}

type evidenceView struct {
	N   int
	E   laev1.Evidence
	Src template.URL // data: URI, "" when the image is not available
}

// plot is the score timeline prepared as SVG coordinates.
type plot struct {
	W, H, L, R, T, B float64
	Line             string // polyline points
	Points           []plotPoint
	ThresholdY       float64
	Threshold        string
	XTicks, YTicks   []tick
	Marks            []mark // evidence frames
	Above            int    // sampled frames above the threshold
	tMin, tMax       float64
}

type plotPoint struct {
	X, Y  float64
	Above bool
	Title string
}

type tick struct {
	Pos   float64
	Label string
}

type mark struct {
	X      float64
	Label  string
	Anchor string  // text-anchor of the label: "end" near the right edge so it is not cut off
	DX     float64 // label offset from the line
}

// Write renders the report of v. images maps Evidence.Image names to their JPEG (or PNG)
// bytes; an evidence frame whose image is missing or not an image is listed without one.
func Write(w io.Writer, v laev1.Verdict, images map[string][]byte, s Settings) error {
	vw := view{V: v, Input: v.Input, Generator: s.Generator, FaceModel: s.FaceModel, ModelPath: s.ModelPath}
	if s.Input != "" {
		vw.Input = s.Input
	}
	if vw.Generator == "" {
		vw.Generator = "lae"
	}
	switch {
	case !s.SampleFPSSet:
		vw.SampleFPS = "not recorded"
	case s.SampleFPS == 0:
		vw.SampleFPS = "every frame"
	default:
		vw.SampleFPS = strconv.FormatFloat(s.SampleFPS, 'g', 4, 64) + " frames/s"
	}
	gen := s.GeneratedAt
	if gen.IsZero() {
		gen = time.Now()
	}
	vw.GeneratedAt = gen.UTC().Format(time.RFC3339)
	if !v.CreatedAt.IsZero() {
		vw.CreatedAt = v.CreatedAt.UTC().Format(time.RFC3339)
	}
	for i, e := range v.Evidence {
		ev := evidenceView{N: i + 1, E: e}
		if b, ok := images[e.Image]; ok && e.Image != "" {
			ev.Src = dataURI(b)
		}
		if ev.Src == "" {
			vw.MissingImages++
		}
		vw.Evidence = append(vw.Evidence, ev)
	}
	vw.Plot = buildPlot(v)
	vw.Lanes = buildLanes(v, vw.Plot)
	vw.Status = statusOf(v)
	vw.Source = sourceFacts(v, vw.Input)
	vw.Version = s.Version
	if vw.Version == "" {
		vw.Version = buildVersion()
	}
	vw.Card = readCard(s.ModelPath, v.Threshold)
	// Render into memory first so a template error never leaves half a report behind.
	var buf bytes.Buffer
	if err := page.Execute(&buf, vw); err != nil {
		return fmt.Errorf("render report of %s: %w", v.VideoID, err)
	}
	if _, err := buf.WriteTo(w); err != nil {
		return fmt.Errorf("write report of %s: %w", v.VideoID, err)
	}
	return nil
}

// dataURI inlines an image. Only JPEG and PNG are inlined: the bytes come from a store, and
// a data: URI of another type (HTML, SVG with script) must never reach an <img src>.
func dataURI(b []byte) template.URL {
	ct := http.DetectContentType(b)
	if ct != "image/jpeg" && ct != "image/png" {
		return ""
	}
	// The content is base64 of checked image bytes, so it is safe as a URL.
	return template.URL("data:" + ct + ";base64," + base64.StdEncoding.EncodeToString(b))
}

// buildPlot lays out the timeline; nil when there is nothing to plot.
func buildPlot(v laev1.Verdict) *plot {
	if len(v.Timeline) == 0 {
		return nil
	}
	p := &plot{W: plotW, H: plotH, L: padL, R: plotW - padR, T: padT, B: plotH - padB}
	tMin, tMax := math.Inf(1), math.Inf(-1)
	for _, pt := range v.Timeline {
		if finite(pt.PTSSeconds) {
			tMin, tMax = math.Min(tMin, pt.PTSSeconds), math.Max(tMax, pt.PTSSeconds)
		}
	}
	if math.IsInf(tMin, 0) {
		tMin, tMax = 0, 1
	}
	if tMin > 0 && tMin < (tMax-tMin) {
		tMin = 0 // start the axis at the video's start unless the plot is a short late window
	}
	if tMax-tMin < 1e-6 {
		tMax = tMin + 1
	}
	p.tMin, p.tMax = tMin, tMax
	x := func(t float64) float64 {
		if !finite(t) {
			t = tMin
		}
		return round1(p.L + (t-tMin)/(tMax-tMin)*(p.R-p.L))
	}
	y := func(s float64) float64 { return round1(p.B - clamp01(s)*(p.B-p.T)) }
	var line bytes.Buffer
	for i, pt := range v.Timeline {
		px, py := x(pt.PTSSeconds), y(pt.Score)
		if i > 0 {
			line.WriteByte(' ')
		}
		fmt.Fprintf(&line, "%g,%g", px, py)
		above := finite(pt.Score) && pt.Score >= v.Threshold
		if above {
			p.Above++
		}
		p.Points = append(p.Points, plotPoint{X: px, Y: py, Above: above,
			Title: fmt.Sprintf("frame %d, %s, score %s, %d face(s)", pt.FrameIndex, fmtSeconds(pt.PTSSeconds), fmtScore(pt.Score), pt.Faces)})
	}
	p.Line = line.String()
	p.ThresholdY = y(v.Threshold)
	p.Threshold = fmtScore(v.Threshold)
	for _, s := range []float64{0, 0.25, 0.5, 0.75, 1} {
		p.YTicks = append(p.YTicks, tick{Pos: y(s), Label: strconv.FormatFloat(s, 'f', 2, 64)})
	}
	step := niceStep((tMax - tMin) / 6)
	for t := math.Ceil(tMin/step) * step; t <= tMax+step/1e6 && len(p.XTicks) < 20; t += step {
		p.XTicks = append(p.XTicks, tick{Pos: x(t), Label: strconv.FormatFloat(t, 'f', -1, 64) + "s"})
	}
	for i, e := range v.Evidence {
		m := mark{X: x(e.PTSSeconds), Label: "#" + strconv.Itoa(i+1), Anchor: "start", DX: 3}
		if m.X > p.R-30 {
			m.Anchor, m.DX = "end", -3
		}
		p.Marks = append(p.Marks, m)
	}
	return p
}

// niceStep rounds a raw tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if !(raw > 0) || !finite(raw) {
		return 1
	}
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			return m * mag
		}
	}
	return 10 * mag
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

func clamp01(f float64) float64 {
	if !finite(f) || f < 0 {
		return 0
	}
	return math.Min(f, 1)
}

func round1(f float64) float64 { return math.Round(f*10) / 10 }

func fmtScore(f float64) string {
	if !finite(f) {
		return "n/a"
	}
	return strconv.FormatFloat(f, 'f', 3, 64)
}

// fmtSeconds prints a media time as m:ss.mmm (h:mm:ss.mmm past an hour).
func fmtSeconds(s float64) string {
	if !finite(s) || s < 0 {
		return "n/a"
	}
	ms := int64(math.Round(s * 1000))
	h, m, sec, milli := ms/3600000, ms/60000%60, ms/1000%60, ms%1000
	if h > 0 {
		return fmt.Sprintf("%d:%02d:%02d.%03d", h, m, sec, milli)
	}
	return fmt.Sprintf("%d:%02d.%03d", m, sec, milli)
}

func fmtRect(r laev1.Rect) string {
	if r.W <= 0 || r.H <= 0 {
		return "none"
	}
	return fmt.Sprintf("x=%.0f y=%.0f w=%.0f h=%.0f", r.X, r.Y, r.W, r.H)
}
