package bench

import (
	"context"
	"fmt"
	"os/exec"
	"time"

	"gocv.io/x/gocv"

	"github.com/lae-screening/lae/ingest/faces"
	"github.com/lae-screening/lae/ingest/pipeline"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/natsembed"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// FaceDetectorSpecs are the detectors whose per-frame cost the ingest section measures.
var FaceDetectorSpecs = []string{"yunet", "haar", "haar-alt", "lbp"}

// IngestRun is one pipeline.Run of the clip.
type IngestRun struct {
	WallS          float64 `json:"wall_s"`
	FramesDecoded  uint64  `json:"frames_decoded"`
	FramesSampled  uint64  `json:"frames_sampled"`
	CropsPublished uint64  `json:"crops_published"`
	// FPS is source frames cleared per second of wall: the clip's frame count over the wall
	// time, so that skipping frames the sampler does not need counts as speed, not as loss.
	FPS float64 `json:"fps"`
}

// IngestReport is the ingest section: pipeline.Run against `ffmpeg -f null` on the same
// file, and each face detector's cost per frame.
type IngestReport struct {
	Clip         string      `json:"clip"`
	SourceFrames int         `json:"source_frames"`
	SampleFPS    float64     `json:"sample_fps"`
	FaceModel    string      `json:"face_model"`
	Runs         []IngestRun `json:"runs"`
	FPS          float64     `json:"fps_median"`
	FFmpegWallS  []float64   `json:"ffmpeg_wall_s"`
	FFmpegFPS    float64     `json:"ffmpeg_fps_median"`
	Ratio        float64     `json:"ratio"`
	// FaceDetectMs is each detector's median milliseconds per frame (FaceDetectFrames frames
	// of the clip at its full size, every repeat).
	FaceDetectMs     map[string]float64 `json:"face_detect_ms"`
	FaceDetectFrames int                `json:"face_detect_frames"`
	// VideoID holds the crops of the last run on the embedded server (the detector's input).
	VideoID string `json:"video_id"`
}

// StartNATS starts the embedded nats-server the in-process sections share: streams in a
// temporary file store, not memory, so that a 60 s clip's crops fit whatever the memory
// limits of the provisioned streams.
func StartNATS(ctx context.Context) (*natsembed.Server, error) {
	s, err := natsembed.Start(ctx, natsembed.Options{})
	if err != nil {
		return nil, fmt.Errorf("start embedded nats-server: %w", err)
	}
	return s, nil
}

// FFmpegDecode times `ffmpeg -v error -i clip -f null -`: decoding the file alone, the floor
// ingest is compared against.
func FFmpegDecode(ctx context.Context, clip string) (time.Duration, error) {
	t0 := time.Now()
	if out, err := exec.CommandContext(ctx, "ffmpeg", "-v", "error", "-i", clip, "-f", "null", "-").CombinedOutput(); err != nil {
		return 0, fmt.Errorf("ffmpeg decode %s: %w: %s", clip, err, out)
	}
	return time.Since(t0), nil
}

// Ingest runs the ingest pipeline in-process on clip repeats times, at lae scan's defaults
// (sample rate, face detector, tiny-face limit), publishing to srv; and ffmpeg's decode of the
// same file as many times. Each run's crops are purged before the next (every run uses its
// own video id), so the last run's crops are left for the detector section.
func Ingest(ctx context.Context, srv *natsembed.Server, clip string, repeats int, logf func(string, ...any)) (*IngestReport, error) {
	pr, err := ProbeClip(ctx, clip)
	if err != nil {
		return nil, err
	}
	in := config.ForCommand("scan").Ingest
	rep := &IngestReport{Clip: clip, SourceFrames: pr.Frames, SampleFPS: in.SampleFPS, FaceModel: in.FaceModel}
	if rep.FaceModel == "" {
		rep.FaceModel = faces.SpecDefault
	}
	var fps, ffps []float64
	for i := 0; i < repeats; i++ {
		if err := purge(ctx, srv); err != nil {
			return rep, err
		}
		id := fmt.Sprintf("bench-ingest-%d", i)
		t0 := time.Now()
		eos, err := pipeline.Run(ctx, srv.JS, id, clip, pipeline.Options{SampleFPS: in.SampleFPS,
			FaceModel: in.FaceModel, MinEyePx: in.MinEyePx, MaxDuration: in.MaxDuration})
		wall := time.Since(t0)
		if err != nil {
			return rep, fmt.Errorf("ingest bench clip: %w", err)
		}
		r := IngestRun{WallS: wall.Seconds(), FramesDecoded: eos.GetFramesDecoded(), FramesSampled: eos.GetFramesSampled(),
			CropsPublished: eos.GetCropsPublished()}
		frames := float64(pr.Frames)
		if frames == 0 {
			frames = float64(r.FramesDecoded)
		}
		r.FPS = frames / wall.Seconds()
		rep.Runs, rep.VideoID = append(rep.Runs, r), id
		fps = append(fps, r.FPS)
		d, err := FFmpegDecode(ctx, clip)
		if err != nil {
			return rep, err
		}
		rep.FFmpegWallS = append(rep.FFmpegWallS, d.Seconds())
		ffps = append(ffps, frames/d.Seconds())
		logf("ingest run %d: %.1f fps (%d crops), ffmpeg %.0f fps", i+1, r.FPS, r.CropsPublished, frames/d.Seconds())
	}
	rep.FPS, rep.FFmpegFPS = Median(fps), Median(ffps)
	if rep.FFmpegFPS > 0 {
		rep.Ratio = rep.FPS / rep.FFmpegFPS
	}
	rep.FaceDetectMs, rep.FaceDetectFrames, err = FaceDetectCost(clip, 30, repeats)
	return rep, err
}

// purge empties the crops and frames streams between ingest runs.
func purge(ctx context.Context, srv *natsembed.Server) error {
	for _, name := range []string{laev1.StreamFaces, laev1.StreamFrames} {
		st, err := srv.JS.Stream(ctx, name)
		if err != nil {
			return fmt.Errorf("look up stream %s: %w", name, err)
		}
		if err := st.Purge(ctx); err != nil {
			return fmt.Errorf("purge stream %s: %w", name, err)
		}
	}
	return nil
}

// FaceDetectCost is each FaceDetectorSpecs detector's median milliseconds per frame on n
// frames of clip (every 10th of its first 10n, so the face moves between them), each frame
// detected repeats times after one warm-up detection.
func FaceDetectCost(clip string, n, repeats int) (map[string]float64, int, error) {
	frames, err := readFrames(clip, n, 10)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		for _, f := range frames {
			_ = f.Close()
		}
	}()
	if len(frames) == 0 {
		return nil, 0, fmt.Errorf("read frames of %s: none decoded", clip)
	}
	out := map[string]float64{}
	for _, spec := range FaceDetectorSpecs {
		d, err := faces.Open(spec)
		if err != nil {
			return out, len(frames), fmt.Errorf("open face detector %s: %w", spec, err)
		}
		if _, err := d.Detect(frames[0]); err != nil {
			_ = d.Close()
			return out, len(frames), fmt.Errorf("face detector %s: %w", spec, err)
		}
		var ms []float64
		for r := 0; r < max(1, repeats); r++ {
			for _, f := range frames {
				t0 := time.Now()
				if _, err := d.Detect(f); err != nil {
					_ = d.Close()
					return out, len(frames), fmt.Errorf("face detector %s: %w", spec, err)
				}
				ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
			}
		}
		_ = d.Close()
		out[spec] = Median(ms)
	}
	return out, len(frames), nil
}

// readFrames decodes up to n frames of path, keeping one in every `every`.
func readFrames(path string, n, every int) ([]gocv.Mat, error) {
	vc, err := gocv.VideoCaptureFile(path)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer func() { _ = vc.Close() }()
	var out []gocv.Mat
	img := gocv.NewMat()
	defer func() { _ = img.Close() }()
	for i := 0; len(out) < n; i++ {
		if !vc.Read(&img) || img.Empty() {
			break
		}
		if i%every == 0 {
			out = append(out, img.Clone())
		}
	}
	return out, nil
}
