package bench

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"gocv.io/x/gocv"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/detector/worker"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/core"
	"github.com/lae-screening/lae/internal/natsembed"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// DetectorReport is the detector section: crops/s through the NATS worker against the same
// model and batch size called directly.
type DetectorReport struct {
	Model     string    `json:"model"`
	BatchSize int       `json:"batch_size"`
	Crops     int       `json:"crops"`
	WorkerCPS []float64 `json:"worker_crops_per_s"`
	DirectCPS []float64 `json:"direct_crops_per_s"`
	Worker    float64   `json:"worker_crops_per_s_median"`
	Direct    float64   `json:"direct_crops_per_s_median"`
	Ratio     float64   `json:"ratio"`
}

// Detector scores the crops of videoID on srv (what the ingest section published) repeats
// times through detector/worker.Run, each time over a fresh consumer from the first crop and
// with its own scoring revision (so no score is de-duplicated away), and as many times
// directly with Model.Predict on the same crops decoded once, batch crops per call. The
// model is loaded as the product loads it (core.LoadModel); modelPath "" is the shipped one.
func Detector(ctx context.Context, srv *natsembed.Server, videoID, modelPath string, batch, repeats int, logf func(string, ...any)) (*DetectorReport, error) {
	d := config.Default().Detector
	d.Model, d.BatchSize = modelPath, batch
	m, err := core.LoadModel(d)
	if err != nil {
		return nil, err
	}
	defer func() { _ = m.Close() }()
	crops, err := ReadCrops(ctx, srv.JS, videoID)
	if err != nil {
		return nil, err
	}
	if len(crops) == 0 {
		return nil, fmt.Errorf("detector bench: no crops of %s to score", videoID)
	}
	md := m.Metadata()
	rep := &DetectorReport{Model: md.Name + " " + md.Version, BatchSize: batch, Crops: len(crops)}
	for i := 0; i < repeats; i++ {
		w, err := workerRate(ctx, srv.JS, m, videoID, len(crops), batch, i)
		if err != nil {
			return rep, err
		}
		dr, err := DirectRate(m, crops, batch)
		if err != nil {
			return rep, err
		}
		logf("detector run %d: worker %.1f crops/s, direct %.1f crops/s", i+1, w, dr)
		rep.WorkerCPS, rep.DirectCPS = append(rep.WorkerCPS, w), append(rep.DirectCPS, dr)
	}
	rep.Worker, rep.Direct = Median(rep.WorkerCPS), Median(rep.DirectCPS)
	if rep.Direct > 0 {
		rep.Ratio = rep.Worker / rep.Direct
	}
	return rep, nil
}

// workerRate runs the worker over a new consumer of videoID's crops until n are scored.
func workerRate(ctx context.Context, js jetstream.JetStream, m *model.Model, videoID string, n, batch, run int) (float64, error) {
	cc := laev1.DetectorConsumerConfig()
	cc.Durable = fmt.Sprintf("bench-detector-%d-%d", run, time.Now().UnixNano())
	cc.FilterSubject = laev1.FacesSubject(videoID)
	cc.Description = "lae bench"
	cons, err := js.CreateConsumer(ctx, laev1.StreamFaces, cc)
	if err != nil {
		return 0, fmt.Errorf("create bench consumer: %w", err)
	}
	defer func() { _ = js.DeleteConsumer(context.WithoutCancel(ctx), laev1.StreamFaces, cc.Durable) }()
	var scored atomic.Int64
	done := make(chan struct{})
	var once atomic.Bool
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	t0 := time.Now()
	go func() {
		errc <- worker.Run(wctx, js, m, worker.Options{BatchSize: batch, Consumer: cons, Revision: uint32(run + 1),
			AbandonPullOnStop: true, Hooks: worker.Hooks{Scored: func(k int) {
				if scored.Add(int64(k)) >= int64(n) && once.CompareAndSwap(false, true) {
					close(done)
				}
			}}})
	}()
	select {
	case <-done:
	case err := <-errc:
		return 0, fmt.Errorf("detector worker stopped after %d of %d crops: %w", scored.Load(), n, err)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	el := time.Since(t0)
	cancel()
	if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
		return 0, fmt.Errorf("stop detector worker: %w", err)
	}
	return float64(n) / el.Seconds(), nil
}

// DirectRate scores crops with m.Predict, batch at a time, one call after another: the
// model alone, the floor the worker is compared against.
func DirectRate(m *model.Model, crops []model.Crop, batch int) (float64, error) {
	t0 := time.Now()
	for i := 0; i < len(crops); i += batch {
		if _, err := m.Predict(crops[i:min(i+batch, len(crops))]); err != nil {
			return 0, fmt.Errorf("predict: %w", err)
		}
	}
	return float64(len(crops)) / time.Since(t0).Seconds(), nil
}

// ReadCrops reads every stored crop of videoID from the faces stream and decodes it to the
// model's input (raw BGR, or JPEG/PNG decoded as the worker does).
func ReadCrops(ctx context.Context, js jetstream.JetStream, videoID string) ([]model.Crop, error) {
	cons, err := js.OrderedConsumer(ctx, laev1.StreamFaces, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{laev1.FacesSubject(videoID)}})
	if err != nil {
		return nil, fmt.Errorf("read crops of %s: %w", videoID, err)
	}
	st, err := js.Stream(ctx, laev1.StreamFaces)
	if err != nil {
		return nil, fmt.Errorf("read crops of %s: %w", videoID, err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(laev1.FacesSubject(videoID)))
	if err != nil {
		return nil, fmt.Errorf("read crops of %s: %w", videoID, err)
	}
	want := int(info.State.Subjects[laev1.FacesSubject(videoID)])
	var out []model.Crop
	for len(out) < want {
		batch, err := cons.Fetch(min(256, want-len(out)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, fmt.Errorf("read crops of %s: %w", videoID, err)
		}
		got := 0
		for msg := range batch.Messages() {
			got++
			var c laev1.FaceCrop
			if err := proto.Unmarshal(msg.Data(), &c); err != nil {
				return nil, fmt.Errorf("decode crop of %s: %w", videoID, err)
			}
			img, err := CropImage(&c)
			if err != nil {
				return nil, err
			}
			out = append(out, img)
		}
		if err := batch.Error(); err != nil {
			return nil, fmt.Errorf("read crops of %s: %w", videoID, err)
		}
		if got == 0 {
			return nil, fmt.Errorf("read crops of %s: %d of %d read, then nothing", videoID, len(out), want)
		}
	}
	return out, nil
}

// CropImage is the crop's pixels as the model takes them (detector/worker's cropPixels,
// which is not exported; the bench only needs the formats ingest publishes).
func CropImage(c *laev1.FaceCrop) (model.Crop, error) {
	switch c.Format {
	case laev1.PixelFormat_PIXEL_FORMAT_BGR8:
		img := model.Crop{BGR: c.Pixels, Width: int(c.Width), Height: int(c.Height)}
		if err := img.Validate(); err != nil {
			return model.Crop{}, fmt.Errorf("bad BGR8 crop: %w", err)
		}
		return img, nil
	case laev1.PixelFormat_PIXEL_FORMAT_JPEG, laev1.PixelFormat_PIXEL_FORMAT_PNG:
		mat, err := gocv.IMDecode(c.Pixels, gocv.IMReadColor)
		if err != nil {
			return model.Crop{}, fmt.Errorf("decode %v crop: %w", c.Format, err)
		}
		defer func() { _ = mat.Close() }()
		img := model.Crop{BGR: mat.ToBytes(), Width: mat.Cols(), Height: mat.Rows()}
		if err := img.Validate(); err != nil {
			return model.Crop{}, fmt.Errorf("decoded %v crop: %w", c.Format, err)
		}
		return img, nil
	default:
		return model.Crop{}, fmt.Errorf("unsupported crop pixel format %v", c.Format)
	}
}
