// Package metrics defines the Prometheus metrics of the lae roles in one place, so names and
// labels stay consistent across ingest, detector and aggregator. A nil *Metrics is valid and
// records nothing, so library code and tests need no registry.
//
// The roles do not import this package: each exposes Hooks (ingest/worker, detector/worker,
// aggregator/service), and the composition site connects them to the methods here, which take
// plain values. So this package stays a leaf that knows no role's types, and a role can be
// observed by something other than Prometheus (a progress display, a test).
package metrics

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every collector; each role uses the ones that concern it.
type Metrics struct {
	// FramesDecoded, FramesSampled, Faces and CropsPublished are ingest's totals, added when a
	// video ends (IngestDone) rather than per frame: the end-of-stream event is the one place
	// where they are final.
	FramesDecoded  prometheus.Counter
	FramesSampled  prometheus.Counter
	Faces          prometheus.Counter
	CropsPublished prometheus.Counter
	// VideosIngested counts videos by outcome: ok, failed.
	VideosIngested *prometheus.CounterVec
	// BatchSize, Inference and CropsScored describe the detector's batches (Batch).
	BatchSize   prometheus.Histogram
	Inference   prometheus.Histogram
	CropsScored prometheus.Counter
	// Verdicts counts final verdicts by label.
	Verdicts *prometheus.CounterVec
	// Errors counts errors by stage and kind.
	Errors *prometheus.CounterVec
	// ConsumerLag is the messages waiting for a consumer, by consumer (WatchConsumer).
	ConsumerLag *prometheus.GaugeVec
	// AckPending is what a consumer's clients hold, delivered and not yet acknowledged: for
	// consumer "detector" these are the crops in flight across all detectors.
	AckPending *prometheus.GaugeVec

	// TimeToVerdict is the time from a submission's acceptance (Accepted) to its first final
	// verdict (VerdictFinal), or what ObserveTimeToVerdict is given.
	TimeToVerdict prometheus.Histogram
	// Decode and FaceDetect are ingest's costs per sampled frame (ObserveDecode,
	// ObserveFaceDetect): the two CPU-heavy steps that size ingest.
	Decode     prometheus.Histogram
	FaceDetect prometheus.Histogram
	// LiveLag is how far a live source's media time is behind the wall clock, by video
	// (SetLiveLag; LiveEnded removes the series so ended streams do not linger).
	LiveLag *prometheus.GaugeVec
	// HTTPRequests and HTTPDuration describe the HTTP API by route pattern (HTTPMiddleware).
	HTTPRequests *prometheus.CounterVec
	HTTPDuration *prometheus.HistogramVec
	// WebhookDeliveries counts ended webhook deliveries by outcome (delivered, failed,
	// dropped); WebhookAttempts is how many tries each ended delivery took
	// (WebhookEnded).
	WebhookDeliveries *prometheus.CounterVec
	WebhookAttempts   prometheus.Histogram
	// BuildInfo is 1 for the running build and model (SetBuildInfo), so dashboards can show
	// and join on what each process runs.
	BuildInfo *prometheus.GaugeVec

	acceptedMu sync.Mutex
	accepted   map[string]time.Time
}

// maxAccepted bounds the submissions waiting for a verdict that Accepted remembers: a verdict
// that never comes (a video lost before ingest, another process's verdict) must not grow the
// map forever. Past the bound the oldest half is forgotten (they then go unmeasured).
const maxAccepted = 100_000

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		FramesDecoded:  prometheus.NewCounter(prometheus.CounterOpts{Name: "lae_frames_decoded_total", Help: "Frames decoded by ingest."}),
		FramesSampled:  prometheus.NewCounter(prometheus.CounterOpts{Name: "lae_frames_sampled_total", Help: "Frames kept by time sampling."}),
		Faces:          prometheus.NewCounter(prometheus.CounterOpts{Name: "lae_faces_total", Help: "Faces detected in sampled frames."}),
		CropsPublished: prometheus.NewCounter(prometheus.CounterOpts{Name: "lae_crops_published_total", Help: "Aligned face crops published."}),
		VideosIngested: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lae_videos_ingested_total", Help: "Videos ingest finished, by outcome."}, []string{"outcome"}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lae_batch_size", Help: "Crops per inference batch.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128}}),
		Inference: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lae_inference_seconds", Help: "Inference latency per batch.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		CropsScored: prometheus.NewCounter(prometheus.CounterOpts{Name: "lae_crops_scored_total", Help: "Crops scored by detectors."}),
		Verdicts:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lae_verdicts_total", Help: "Verdicts published, by verdict."}, []string{"verdict"}),
		Errors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lae_errors_total", Help: "Errors by stage and kind."}, []string{"stage", "kind"}),
		ConsumerLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lae_consumer_pending", Help: "Messages waiting for a consumer."}, []string{"consumer"}),
		AckPending:  prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lae_consumer_ack_pending", Help: "Messages delivered to a consumer and not yet acknowledged."}, []string{"consumer"}),
		// 0.25 s .. ~2.3 h: a short clip on an idle system up to a long video behind a queue.
		TimeToVerdict: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lae_time_to_verdict_seconds",
			Help: "Time from a submission's acceptance to its final verdict.", Buckets: prometheus.ExponentialBuckets(0.25, 2, 16)}),
		// 0.25 ms .. ~2 s per sampled frame: a small H.264 frame up to a 4K HEVC one on a
		// busy core (or a live source's pacing, which the read waits out too).
		Decode: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lae_ingest_decode_seconds",
			Help:    "Time to read and decode up to one sampled frame (FFmpeg; a live source's wait for its frames included).",
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 14)}),
		FaceDetect: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lae_ingest_face_detect_seconds",
			Help: "Time the face detector took on one sampled frame.", Buckets: prometheus.ExponentialBuckets(0.00025, 2, 14)}),
		LiveLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lae_live_lag_seconds",
			Help: "How far a live source's media time is behind the wall clock."}, []string{"video_id"}),
		HTTPRequests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lae_http_requests_total",
			Help: "HTTP requests answered, by route pattern and status code."}, []string{"route", "code"}),
		HTTPDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "lae_http_request_seconds",
			Help: "HTTP request latency until the handler returned, by route pattern.", Buckets: prometheus.DefBuckets}, []string{"route"}),
		WebhookDeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "lae_webhook_deliveries_total",
			Help: "Webhook deliveries that ended, by outcome: delivered, failed (out of attempts or refused) or dropped (never sent: queue full or shutting down)."}, []string{"outcome"}),
		WebhookAttempts: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "lae_webhook_attempts",
			Help: "Tries each ended webhook delivery took.", Buckets: []float64{1, 2, 3, 5, 8, 13}}),
		BuildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "lae_build_info",
			Help: "Always 1: the lae version and the model (name and version) this process runs."}, []string{"version", "model"}),
		accepted: map[string]time.Time{},
	}
	if reg != nil {
		reg.MustRegister(m.FramesDecoded, m.FramesSampled, m.Faces, m.CropsPublished, m.VideosIngested,
			m.BatchSize, m.Inference, m.CropsScored, m.Verdicts, m.Errors, m.ConsumerLag, m.AckPending,
			m.TimeToVerdict, m.Decode, m.FaceDetect, m.LiveLag, m.HTTPRequests, m.HTTPDuration, m.WebhookDeliveries, m.WebhookAttempts, m.BuildInfo)
	}
	return m
}

// WebhookEnded records how a webhook delivery ended (webhook.Options.Ended): state
// "delivered" or "failed" after attempts tries, none for one dropped unsent.
func (m *Metrics) WebhookEnded(state string, attempts int) {
	if m == nil {
		return
	}
	outcome := state
	if attempts == 0 {
		outcome = "dropped"
	} else {
		m.WebhookAttempts.Observe(float64(attempts))
	}
	m.WebhookDeliveries.WithLabelValues(outcome).Inc()
}

// SetBuildInfo sets lae_build_info{version, model} to 1, replacing an earlier pair (a
// process runs one build and one model at a time).
func (m *Metrics) SetBuildInfo(version, model string) {
	if m == nil {
		return
	}
	m.BuildInfo.Reset()
	m.BuildInfo.WithLabelValues(version, model).Set(1)
}

// ObserveDecode records the time ingest took to read and decode up to one sampled frame.
func (m *Metrics) ObserveDecode(d time.Duration) {
	if m != nil && d >= 0 {
		m.Decode.Observe(d.Seconds())
	}
}

// ObserveFaceDetect records the time the face detector took on one sampled frame.
func (m *Metrics) ObserveFaceDetect(d time.Duration) {
	if m != nil && d >= 0 {
		m.FaceDetect.Observe(d.Seconds())
	}
}

// SetLiveLag records how far a live source is behind: the wall-clock time since its first
// sampled frame minus the media time read since then (the composition site computes it). It
// grows when ingest cannot keep up.
func (m *Metrics) SetLiveLag(videoID string, lag time.Duration) {
	if m != nil {
		m.LiveLag.WithLabelValues(videoID).Set(lag.Seconds())
	}
}

// LiveEnded removes a live source's lag series when its ingest ends.
func (m *Metrics) LiveEnded(videoID string) {
	if m != nil {
		m.LiveLag.DeleteLabelValues(videoID)
	}
}

// ObserveTimeToVerdict records one submission's time from acceptance to final verdict,
// for callers that know both ends themselves.
func (m *Metrics) ObserveTimeToVerdict(d time.Duration) {
	if m != nil && d >= 0 {
		m.TimeToVerdict.Observe(d.Seconds())
	}
}

// Accepted remembers when a submission was accepted, for VerdictFinal. Only the first
// acceptance of an id counts: a resubmission does not restart the clock.
func (m *Metrics) Accepted(videoID string, at time.Time) {
	if m == nil {
		return
	}
	m.acceptedMu.Lock()
	defer m.acceptedMu.Unlock()
	if _, ok := m.accepted[videoID]; ok {
		return
	}
	if len(m.accepted) >= maxAccepted {
		m.forgetOldest()
	}
	m.accepted[videoID] = at
}

// forgetOldest drops the older half of the remembered acceptances.
func (m *Metrics) forgetOldest() {
	var times []time.Time
	for _, t := range m.accepted {
		times = append(times, t)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	cut := times[len(times)/2]
	for id, t := range m.accepted {
		if t.Before(cut) {
			delete(m.accepted, id)
		}
	}
}

// VerdictFinal observes the time to verdict of a video whose acceptance this process saw
// (Accepted) and forgets it; a video accepted elsewhere is not observed.
func (m *Metrics) VerdictFinal(videoID string, at time.Time) {
	if m == nil {
		return
	}
	m.acceptedMu.Lock()
	t, ok := m.accepted[videoID]
	delete(m.accepted, videoID)
	m.acceptedMu.Unlock()
	if ok {
		m.ObserveTimeToVerdict(at.Sub(t))
	}
}

// Error counts one error of a stage.
func (m *Metrics) Error(stage, kind string) {
	m.ErrorN(stage, kind, 1)
}

// ErrorN counts n errors of a stage at once: the detector reports failures per batch, and a
// loop of Error calls would be n label lookups for one event.
func (m *Metrics) ErrorN(stage, kind string, n int) {
	if m != nil && n > 0 {
		m.Errors.WithLabelValues(stage, kind).Add(float64(n))
	}
}

// StageErrors returns an error hook for one stage: the roles report errors by kind alone
// (their Hooks.Error), and the stage label is the composition site's knowledge. It is nil
// when m is nil, so a role without metrics pays no call at all.
func (m *Metrics) StageErrors(stage string) func(kind string) {
	if m == nil {
		return nil
	}
	return func(kind string) { m.Error(stage, kind) }
}

// IngestDone records one video whose ingest ended, ok or not, with the counts of its
// end-of-stream event (zeros when there is none). It takes plain values so that this package
// need not know the ingest types.
func (m *Metrics) IngestDone(ok bool, framesDecoded, framesSampled, faces, crops uint64) {
	if m == nil {
		return
	}
	outcome := "ok"
	if !ok {
		outcome = "failed"
	}
	m.VideosIngested.WithLabelValues(outcome).Inc()
	m.FramesDecoded.Add(float64(framesDecoded))
	m.FramesSampled.Add(float64(framesSampled))
	m.Faces.Add(float64(faces))
	m.CropsPublished.Add(float64(crops))
}

// Verdict counts one published verdict by its label (real, fake, unknown, error).
func (m *Metrics) Verdict(v string) {
	if m != nil {
		m.Verdicts.WithLabelValues(v).Inc()
	}
}

// Batch records one inference batch.
func (m *Metrics) Batch(n int, took time.Duration) {
	if m != nil {
		m.BatchSize.Observe(float64(n))
		m.Inference.Observe(took.Seconds())
		m.CropsScored.Add(float64(n))
	}
}

// WatchConsumer polls a consumer's pending counts into ConsumerLag and AckPending until ctx ends.
func (m *Metrics) WatchConsumer(ctx context.Context, js jetstream.JetStream, stream, consumer string, every time.Duration) {
	if m == nil {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if c, err := js.Consumer(ctx, stream, consumer); err == nil {
			if info, err := c.Info(ctx); err == nil {
				m.ConsumerLag.WithLabelValues(consumer).Set(float64(info.NumPending))
				m.AckPending.WithLabelValues(consumer).Set(float64(info.NumAckPending))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
