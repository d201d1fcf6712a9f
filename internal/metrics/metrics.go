// Package metrics defines the Prometheus metrics of the lae roles in one place, so names and
// labels stay consistent across ingest, detector and aggregator. A nil *Metrics is valid and
// records nothing, so library code and tests need no registry.
package metrics

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics holds every collector; each role uses the ones that concern it.
type Metrics struct {
	FramesDecoded  prometheus.Counter
	FramesSampled  prometheus.Counter
	Faces          prometheus.Counter
	CropsPublished prometheus.Counter
	VideosIngested *prometheus.CounterVec // by outcome: ok, failed
	BatchSize      prometheus.Histogram
	Inference      prometheus.Histogram
	CropsScored    prometheus.Counter
	Verdicts       *prometheus.CounterVec // by verdict
	Errors         *prometheus.CounterVec // by stage and kind
	ConsumerLag    *prometheus.GaugeVec   // pending messages by consumer
	// AckPending is what a consumer's clients hold, delivered and not yet acknowledged: for
	// consumer "detector" these are the crops in flight across all detectors.
	AckPending *prometheus.GaugeVec
}

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
	}
	if reg != nil {
		reg.MustRegister(m.FramesDecoded, m.FramesSampled, m.Faces, m.CropsPublished, m.VideosIngested,
			m.BatchSize, m.Inference, m.CropsScored, m.Verdicts, m.Errors, m.ConsumerLag, m.AckPending)
	}
	return m
}

// Error counts one error of a stage.
func (m *Metrics) Error(stage, kind string) {
	if m != nil {
		m.Errors.WithLabelValues(stage, kind).Inc()
	}
}

// Verdict counts one published verdict.
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
