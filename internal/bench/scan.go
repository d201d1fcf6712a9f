package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// ClipSource is the talking-head video of the shared data the generated clip loops.
const ClipSource = "videos/talking/LivePortrait__46e8bbc__assets_examples_driving_d6.mp4"

// GenerateClip writes the bench's reference input into dst: seconds of 1280x720 30 fps
// H.264 with a face, the source face video scaled to 560 rows and padded, as a phone upload
// would be. ffmpeg encodes it, so the bench measures lae on a stream a real encoder made.
func GenerateClip(ctx context.Context, dataDir, dst string, seconds int) error {
	src := filepath.Join(dataDir, ClipSource)
	cmd := exec.CommandContext(ctx, "ffmpeg", "-y", "-v", "error", "-stream_loop", "-1", "-i", src,
		"-t", strconv.Itoa(seconds), "-vf", "scale=-2:560,pad=1280:720:(ow-iw)/2:(oh-ih)/2,fps=30",
		"-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("generate bench clip from %s: %w: %s", src, err, bytes.TrimSpace(out))
	}
	return nil
}

// Probe is what ffprobe says about a video's first stream.
type Probe struct {
	Duration float64
	Frames   int
}

// ProbeClip asks ffprobe for the duration and the frame count (counted packets, so it is
// exact for files whose header does not say).
func ProbeClip(ctx context.Context, path string) (Probe, error) {
	out, err := exec.CommandContext(ctx, "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
		"-show_entries", "stream=nb_read_packets:format=duration", "-of", "default=nw=1", path).Output()
	if err != nil {
		return Probe{}, fmt.Errorf("ffprobe %s: %w", path, err)
	}
	var p Probe
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), "=")
		switch k {
		case "duration":
			p.Duration, _ = strconv.ParseFloat(v, 64)
		case "nb_read_packets":
			p.Frames, _ = strconv.Atoi(v)
		}
	}
	return p, nil
}

// ScanRun is one `lae scan --json` of one input.
type ScanRun struct {
	Input     string  `json:"input"`
	WallS     float64 `json:"wall_s"`
	CPUS      float64 `json:"cpu_s"`
	PeakRSSMB float64 `json:"peak_rss_mb"`
	// RealtimeX is media seconds per wall second.
	RealtimeX float64 `json:"realtime_x"`
	MediaS    float64 `json:"media_s"`
	Verdict   string  `json:"verdict"`
	Score     float64 `json:"score"`
	Error     string  `json:"error,omitempty"`
}

// ScanReport is the scan section: the generated clip's repeats with their medians, then
// every shared clip once.
type ScanReport struct {
	Clip        string    `json:"clip"`
	ClipMediaS  float64   `json:"clip_media_s"`
	ClipRuns    []ScanRun `json:"clip_runs"`
	RealtimeX   float64   `json:"realtime_x_median"`
	WallS       float64   `json:"wall_s_median"`
	CPUS        float64   `json:"cpu_s_median"`
	PeakRSSMB   float64   `json:"peak_rss_mb_median"`
	SharedClips []ScanRun `json:"shared_clips"`
}

// ScanOne runs `lae scan --json --quiet` on path as a child process and measures it; the
// process's rusage gives CPU and peak RSS, the JSON line the verdict. media is the clip's
// duration (0: take the verdict's declared duration).
func ScanOne(ctx context.Context, lae, path string, media float64) (ScanRun, error) {
	out, u, err := RunChild(ctx, lae, "scan", "--json", "--quiet", path)
	r := ScanRun{Input: path, WallS: u.Wall.Seconds(), CPUS: u.CPU.Seconds(), PeakRSSMB: u.PeakRSSMB, MediaS: media}
	vs, perr := ParseScanJSON(out)
	if perr == nil && len(vs) == 1 {
		r.Verdict, r.Score, r.Error = vs[0].Verdict, vs[0].Score, vs[0].Error
		if r.MediaS == 0 && vs[0].Source != nil {
			r.MediaS = vs[0].Source.DurationSeconds
		}
	}
	if r.WallS > 0 {
		r.RealtimeX = r.MediaS / r.WallS
	}
	switch {
	case err != nil && len(vs) == 0:
		r.Error = err.Error()
		return r, err
	case perr != nil:
		r.Error = perr.Error()
		return r, perr
	}
	return r, nil
}

// ParseScanJSON reads the verdict lines of `lae scan --json` (one JSON object per input).
func ParseScanJSON(b []byte) ([]laev1.Verdict, error) {
	var out []laev1.Verdict
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] != '{' {
			continue
		}
		var v laev1.Verdict
		if err := json.Unmarshal(line, &v); err != nil {
			return out, fmt.Errorf("parse lae scan output: %w", err)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("parse lae scan output: no verdict line in %q", truncate(b, 200))
	}
	return out, nil
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// Scan measures `lae scan` on the generated clip repeats times (medians into the report's
// headline figures) and on every media file under dataDir/videos once.
func Scan(ctx context.Context, lae, clip, dataDir string, repeats int, logf func(string, ...any)) (*ScanReport, error) {
	pr, err := ProbeClip(ctx, clip)
	if err != nil {
		return nil, err
	}
	rep := &ScanReport{Clip: clip, ClipMediaS: pr.Duration}
	var rt, wall, cpu, rss []float64
	for i := 0; i < repeats; i++ {
		r, err := ScanOne(ctx, lae, clip, pr.Duration)
		if err != nil {
			return rep, fmt.Errorf("scan bench clip: %w", err)
		}
		logf("scan clip run %d: %.1fs wall, %.2fx real time, %.0f MB", i+1, r.WallS, r.RealtimeX, r.PeakRSSMB)
		rep.ClipRuns = append(rep.ClipRuns, r)
		rt, wall, cpu, rss = append(rt, r.RealtimeX), append(wall, r.WallS), append(cpu, r.CPUS), append(rss, r.PeakRSSMB)
	}
	rep.RealtimeX, rep.WallS, rep.CPUS, rep.PeakRSSMB = Median(rt), Median(wall), Median(cpu), Median(rss)
	if dataDir == "" {
		return rep, nil
	}
	files, err := MediaFiles(dataDir, "videos")
	if err != nil {
		return rep, fmt.Errorf("list shared videos: %w", err)
	}
	for _, rel := range files {
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		r, _ := ScanOne(ctx, lae, filepath.Join(dataDir, rel), 0)
		r.Input = rel
		logf("scan %s: %.1fs wall, %.2fx, %s %.3f %s", rel, r.WallS, r.RealtimeX, r.Verdict, r.Score, r.Error)
		rep.SharedClips = append(rep.SharedClips, r)
	}
	return rep, nil
}
