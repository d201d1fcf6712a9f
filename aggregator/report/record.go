package report

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// status is how the report words the result: the badge and one sentence. A result that is
// not a verdict on the whole video (unknown, error, a rolling update, a partial read) is
// never worded, nor coloured, as a plain "real".
type status struct {
	Label, Class, Headline string
	// ShowScore is false when there is no score to show (unknown, error): a 0.000 there
	// would read as "certainly real".
	ShowScore bool
	// ScoreLabel names the score ("score", "score so far", "score of the part read").
	ScoreLabel string
	Partial    bool
}

// readPercent is the share read as a whole percent, rounded down so that a file missing its
// last few frames never reads "100 %".
func readPercent(share float64) int {
	return int(math.Floor(clamp01(share) * 100))
}

// partial reports whether a final verdict speaks for part of the video only, and how much.
// Verdicts from before completeness was recorded carry no share and count as complete.
func partial(v laev1.Verdict) (bool, int) {
	if !v.Final || v.Complete || v.ReadShare == nil {
		return false, 0
	}
	return true, readPercent(*v.ReadShare)
}

func statusOf(v laev1.Verdict) status {
	part, pct := partial(v)
	st := status{Label: v.Verdict, Class: "v-" + v.Verdict, ShowScore: true, ScoreLabel: "score", Partial: part}
	switch {
	case v.Verdict == laev1.VerdictError:
		st.ShowScore = false
		st.Headline = "The scan failed: there is no verdict on this video."
	case v.Verdict == laev1.VerdictUnknown:
		st.ShowScore = false
		st.Headline = "No usable face: there is no score and no verdict. Absence of evidence is not evidence that the video is real."
	case !v.Final:
		st.Label, st.Class, st.ScoreLabel = "rolling", "v-rolling", "score so far"
		if v.Verdict == laev1.VerdictFake {
			st.Headline = "Rolling update of a scan in progress: fake so far. Not final."
		} else {
			st.Headline = "Rolling update of a scan in progress: no fake signal so far. Not final; not a verdict of real."
		}
	case part && v.Verdict == laev1.VerdictFake:
		st.ScoreLabel = "score of the part read"
		st.Headline = fmt.Sprintf("Fake in the part read. Partial: only %d%% of the video was read.", pct)
	case part:
		st.Label, st.Class, st.ScoreLabel = "partial", "v-partial", "score of the part read"
		st.Headline = fmt.Sprintf("Partial: only %d%% of the video was read. No fake signal in the part read; this is not a verdict of real on the whole video.", pct)
	case v.Verdict == laev1.VerdictFake:
		st.Headline = "Fake: the video score is at or above the model's calibrated threshold."
	case v.Verdict == laev1.VerdictReal:
		st.Headline = "Real: the video score is below the model's calibrated threshold. The model can miss manipulations (see the operating point below)."
	default:
		st.Class = "v-unknown"
	}
	return st
}

// sourceFacts lists the input's forensic facts in display order.
func sourceFacts(v laev1.Verdict, input string) []fact {
	out := []fact{{ID: "src-input", Label: "Input", Value: input}}
	add := func(id, label, value string) {
		out = append(out, fact{ID: id, Label: label, Value: value, Missing: value == ""})
		if value == "" {
			out[len(out)-1].Value = "not recorded"
		}
	}
	s := v.Source
	if s == nil {
		s = &laev1.SourceFacts{}
	}
	switch {
	case s.SHA256 != "":
		add("src-size", "File size", fmtBytes(s.FileSize))
		add("src-sha256", "SHA-256", s.SHA256)
	default:
		add("src-size", "File size", "")
		add("src-sha256", "SHA-256", "")
	}
	add("src-container", "Container", s.Container)
	add("src-codec", "Video codec", s.Codec)
	res := ""
	if s.Width > 0 && s.Height > 0 {
		res = fmt.Sprintf("%d×%d shown", s.Width, s.Height)
		if s.CodedWidth > 0 && s.CodedHeight > 0 {
			res += fmt.Sprintf(", %d×%d stored", s.CodedWidth, s.CodedHeight)
		}
	}
	add("src-resolution", "Resolution", res)
	fps := ""
	if s.FPS > 0 && finite(s.FPS) {
		fps = strconv.FormatFloat(s.FPS, 'f', -1, 64) + " frames/s (declared)"
	} else if v.Source != nil {
		fps = "not declared"
	}
	add("src-fps", "Frame rate", fps)
	dur := ""
	if s.DurationSeconds > 0 && finite(s.DurationSeconds) {
		dur = fmtSeconds(s.DurationSeconds) + " (declared)"
	} else if v.Source != nil {
		dur = "unknown (live or not declared)"
	}
	add("src-duration", "Duration", dur)
	rot := ""
	if v.Source != nil {
		switch {
		case s.Rotation == 0 && !s.Mirrored:
			rot = "none"
		case s.Rotation == 0:
			rot = "mirrored"
		default:
			rot = fmt.Sprintf("%d° clockwise", s.Rotation)
			if s.Mirrored {
				rot += ", mirrored"
			}
		}
	}
	add("src-rotation", "Rotation", rot)
	read := "whole video"
	limited := v.ReadShare != nil && v.Complete && s.FPS > 0 && s.DurationSeconds > 0 &&
		s.DurationSeconds > float64(v.FramesDecoded)/s.FPS+1
	switch part, pct := partial(v); {
	case limited:
		read = fmt.Sprintf("the first %s of %s, as asked (a duration limit)", fmtSeconds(float64(v.FramesDecoded)/s.FPS), fmtSeconds(s.DurationSeconds))
	case part:
		read = fmt.Sprintf("partial: only %d%% read", pct)
	case !v.Final:
		read = "scan in progress"
	case v.ReadShare == nil && v.Verdict == laev1.VerdictError:
		read = "not read (the scan failed)"
	case v.ReadShare == nil:
		read = "whole stream (length not declared)"
	}
	add("src-read", "Read", read)
	return out
}

// fmtBytes prints a size exactly and in readable units.
func fmtBytes(n uint64) string {
	exact := strconv.FormatUint(n, 10) + " bytes"
	const unit = 1024.0
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit {
			if n < 1024 {
				return exact
			}
			return fmt.Sprintf("%s (%.1f %s)", exact, f, u)
		}
	}
	return exact
}

// buildVersion is this binary's lae version (module version, commit) from its build
// information.
func buildVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "not recorded"
	}
	ver := bi.Main.Version
	if ver == "" || ver == "(devel)" {
		ver = "devel"
	}
	commit, modified := "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value[:min(len(s.Value), 12)]
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if commit != "" {
		ver += " (commit " + commit
		if modified {
			ver += "-dirty"
		}
		ver += ")"
	}
	return ver
}

// cardView is what the report shows of the model card: identity, how the threshold was
// chosen, the operating point it was measured at, and the known limits. Every figure the
// card does not have reads "not measured".
type cardView struct {
	Path, Problem                  string
	Name, Version, Threshold, Rule string
	Detection, FalseAlarms, Photos string
	AUC, How, Mismatch             string
	PerMethod                      []fact
	// Limits are the card's own; Measured are limits read off its figures.
	Limits, Measured []string
}

type tally struct {
	Clips      int `json:"clips"`
	CalledFake int `json:"called_fake"`
}

// cardFile is the part of a model card (<model>.card.json) the report reads.
type cardFile struct {
	Threshold *float64 `json:"threshold"`
	Model     struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"model"`
	ThresholdChoice struct {
		Rule string `json:"rule"`
	} `json:"threshold_choice"`
	Limitations json.RawMessage `json:"limitations"`
	KnownLimits json.RawMessage `json:"known_limits"`
	Eval        struct {
		Video *struct {
			AUC         *float64           `json:"deepfakes_dev_auc"`
			PerMethod   map[string]float64 `json:"deepfakes_dev_auc_per_method"`
			AtThreshold *struct {
				FakesCalledFake int  `json:"fakes_called_fake"`
				Fakes           int  `json:"fakes"`
				RealsCalledFake int  `json:"reals_called_fake"`
				Reals           *int `json:"reals"`
			} `json:"deepfakes_dev_at_threshold"`
			RealClips  map[string]tally `json:"real_clips_false_alarms"`
			PhotoClips map[string]tally `json:"photo_clips"`
			Threshold  *float64         `json:"threshold"`
			How        string           `json:"how"`
		} `json:"video"`
	} `json:"eval"`
}

const notMeasured = "not measured"

// readCard reads the card beside the model file (model.onnx → model.card.json).
func readCard(modelPath string, threshold float64) cardView {
	cv := cardView{Detection: notMeasured, FalseAlarms: notMeasured, Photos: notMeasured, AUC: notMeasured}
	if modelPath == "" {
		cv.Problem = "the model file was not recorded, so its card could not be read"
		return cv
	}
	cv.Path = strings.TrimSuffix(modelPath, ".onnx") + ".card.json"
	b, err := os.ReadFile(cv.Path)
	if err != nil {
		cv.Problem = "the model card could not be read: " + err.Error()
		return cv
	}
	var c cardFile
	if err := json.Unmarshal(b, &c); err != nil {
		cv.Problem = "the model card could not be parsed: " + err.Error()
		return cv
	}
	cv.Name, cv.Version, cv.Rule = c.Model.Name, c.Model.Version, c.ThresholdChoice.Rule
	if c.Threshold != nil {
		cv.Threshold = fmtScore(*c.Threshold)
	}
	cv.Limits = append(stringsOf(c.Limitations), stringsOf(c.KnownLimits)...)
	ev := c.Eval.Video
	if ev == nil {
		return cv
	}
	measuredAt := c.Threshold
	if ev.Threshold != nil {
		measuredAt = ev.Threshold
	}
	if measuredAt != nil && math.Abs(*measuredAt-threshold) > 1e-6 {
		cv.Mismatch = fmt.Sprintf("The card's figures were measured at threshold %s; this scan used %s, whose operating point was not measured.",
			fmtScore(*measuredAt), fmtScore(threshold))
	}
	if a := ev.AtThreshold; a != nil && a.Fakes > 0 {
		cv.Detection = fmt.Sprintf("%d of %d manipulated clips (deepfakes-dev) called fake: %s", a.FakesCalledFake, a.Fakes, pct(a.FakesCalledFake, a.Fakes))
	}
	clips, fakes := 0, 0
	var parts []string
	for _, k := range sortedKeys(ev.RealClips) {
		t := ev.RealClips[k]
		clips, fakes = clips+t.Clips, fakes+t.CalledFake
		parts = append(parts, fmt.Sprintf("%s %d/%d", strings.ReplaceAll(k, "_", " "), t.CalledFake, t.Clips))
	}
	if a := ev.AtThreshold; a != nil && a.Reals != nil && *a.Reals > 0 {
		clips, fakes = clips+*a.Reals, fakes+a.RealsCalledFake
		parts = append(parts, fmt.Sprintf("deepfakes-dev reals %d/%d", a.RealsCalledFake, *a.Reals))
	}
	if clips > 0 {
		cv.FalseAlarms = fmt.Sprintf("%d of %d real clips called fake: %s (%s)", fakes, clips, pct(fakes, clips), strings.Join(parts, ", "))
	}
	clips, fakes, parts = 0, 0, nil
	for _, k := range sortedKeys(ev.PhotoClips) {
		t := ev.PhotoClips[k]
		clips, fakes = clips+t.Clips, fakes+t.CalledFake
		parts = append(parts, fmt.Sprintf("%s %d/%d", k, t.CalledFake, t.Clips))
	}
	if clips > 0 {
		cv.Photos = fmt.Sprintf("%d of %d clips of still photos called fake: %s (%s)", fakes, clips, pct(fakes, clips), strings.Join(parts, ", "))
	}
	if ev.AUC != nil {
		cv.AUC = fmtScore(*ev.AUC) + " (deepfakes-dev, threshold-free)"
	}
	for _, k := range sortedKeys(ev.PerMethod) {
		cv.PerMethod = append(cv.PerMethod, fact{Label: k, Value: fmtScore(ev.PerMethod[k])})
	}
	cv.How = ev.How
	// What the card measured that limits the model, stated as such (the card lists no
	// limits of its own).
	var weak []string
	for _, m := range cv.PerMethod {
		if a, err := strconv.ParseFloat(m.Value, 64); err == nil && a < 0.8 {
			weak = append(weak, m.Label+" (AUC "+m.Value+")")
		}
	}
	if len(weak) > 0 {
		cv.Measured = append(cv.Measured, "Weakest on: "+strings.Join(weak, ", ")+".")
	}
	if a := ev.AtThreshold; a != nil && a.Fakes > 0 && a.FakesCalledFake*2 < a.Fakes {
		cv.Measured = append(cv.Measured, "At this threshold most manipulated clips of the evaluation set were not called fake ("+cv.Detection+").")
	}
	return cv
}

func pct(n, of int) string {
	return strconv.FormatFloat(100*float64(n)/float64(of), 'f', 1, 64) + "%"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// stringsOf accepts a card field written as one string or a list of strings.
func stringsOf(raw json.RawMessage) []string {
	if len(raw) == 0 {
		return nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		if one == "" {
			return nil
		}
		return []string{one}
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many
	}
	return nil
}

// lanes is the per-track timeline: one lane per face track on the score plot's time axis,
// a bar where the track was seen, and the evidence frames of the track as markers.
type lanes struct {
	W, H, L, R float64
	Lanes      []lane
}

type lane struct {
	Y, BarY, BarX, BarW float64
	Label, Score        string
	Class, Title        string
	ScoreX              float64
	Marks               []laneMark
}

type laneMark struct {
	X, Y  float64
	Title string
}

// Lane geometry: the label on top, then the 10-unit bar.
const laneH, laneBarY = 32.0, 16.0

func buildLanes(v laev1.Verdict, p *plot) *lanes {
	if p == nil || len(v.Tracks) == 0 {
		return nil
	}
	x := func(t float64) float64 {
		if !finite(t) {
			t = p.tMin
		}
		return round1(math.Min(p.R, math.Max(p.L, p.L+(t-p.tMin)/(p.tMax-p.tMin)*(p.R-p.L))))
	}
	ls := &lanes{W: p.W, L: p.L, R: p.R}
	for i, t := range v.Tracks {
		y := 4 + float64(i)*laneH
		x0, x1 := x(t.FirstPTS), x(t.LastPTS)
		score := "score " + trackScore(t)
		l := lane{Y: y, BarY: y + laneBarY, BarX: x0, BarW: math.Max(2, x1-x0), Label: "T" + strconv.FormatUint(t.TrackID, 10),
			Score: score + " · " + trackLabel(v, t), Class: "lane-" + t.Verdict,
			Title: fmt.Sprintf("track %d: %d face(s), %s to %s, %s, %s", t.TrackID, t.Faces, fmtSeconds(t.FirstPTS), fmtSeconds(t.LastPTS), score, trackLabel(v, t))}
		// The label sits above the bar, where the evidence markers (on the bar) cannot hide
		// it; it starts at the bar unless that would run it off the plot.
		l.ScoreX = math.Min(x0, p.R-180)
		for j, e := range v.Evidence {
			if e.TrackID == t.TrackID {
				l.Marks = append(l.Marks, laneMark{X: x(e.PTSSeconds), Y: y + laneBarY + 5,
					Title: fmt.Sprintf("evidence #%d at %s, score %s", j+1, fmtSeconds(e.PTSSeconds), fmtScore(e.Score))})
			}
		}
		ls.Lanes = append(ls.Lanes, l)
	}
	ls.H = 8 + float64(len(v.Tracks))*laneH
	return ls
}

// trackScore is a track's score, or a dash when the track has none (no usable crop).
func trackScore(t laev1.Track) string {
	if t.Verdict == laev1.VerdictUnknown || t.Verdict == laev1.VerdictError {
		return "—"
	}
	return fmtScore(t.Score)
}

// trackLabel is a track's verdict as the report words it: a track of a scan that did not read
// the whole video (partial, rolling, failed) is never labelled plain "real".
func trackLabel(v laev1.Verdict, t laev1.Track) string {
	if t.Verdict != laev1.VerdictReal {
		return t.Verdict
	}
	part, _ := partial(v)
	switch {
	case !v.Final:
		return "no fake signal so far"
	case part, v.Verdict == laev1.VerdictError:
		return "no fake signal in the part read"
	}
	return t.Verdict
}
