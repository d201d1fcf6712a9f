package laev1

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Stream, consumer and bucket names.
const (
	// StreamFaces holds face crops. It is a limits stream, not a work queue, so that it doubles
	// as the retention-limited crop archive that rescoring replays; the detectors share one
	// durable pull consumer (ConsumerDetector) that gives them work-queue semantics.
	StreamFaces = "LAE_FACES"
	// StreamFrames holds downscaled frame images used to draw evidence.
	StreamFrames = "LAE_FRAMES"
	// StreamScores holds scores and end-of-stream events, in one stream so the aggregator reads
	// both through one ordered consumer.
	StreamScores = "LAE_SCORES"
	// StreamVerdicts keeps published verdicts for late subscribers.
	StreamVerdicts = "LAE_VERDICTS"
	// StreamIngest is the work queue of accepted submissions.
	StreamIngest = "LAE_INGEST"

	// ConsumerDetector is the durable consumer shared by all detector workers.
	ConsumerDetector = "detector"
	// ConsumerAggregator is the durable consumer of the aggregator.
	ConsumerAggregator = "aggregator"
	// ConsumerIngest is the durable consumer shared by all ingest workers.
	ConsumerIngest = "ingest"

	// BucketVerdicts is the KV bucket of the latest verdict per video (key = video id);
	// history keeps earlier revisions.
	BucketVerdicts = "verdicts"
	// BucketEvidence is the object store of evidence images (name = EvidenceObjectName).
	BucketEvidence = "evidence"
	// BucketUploads is the object store of files uploaded through the HTTP API (name = the
	// video id, submitted as UploadURL): ingest reads them from here, so that the API and the
	// ingest workers need not share a disk.
	BucketUploads = "uploads"
)

// Retention holds the size and age limits of the streams. Zero values take the defaults.
type Retention struct {
	FacesMaxAge    time.Duration
	FacesMaxBytes  int64
	FramesMaxAge   time.Duration
	FramesMaxBytes int64
	ScoresMaxAge   time.Duration
	// UploadsMaxAge and UploadsMaxBytes bound the uploads bucket. The API deletes an upload
	// a while after its verdict; these only catch what it never got to (an API that was down).
	UploadsMaxAge   time.Duration
	UploadsMaxBytes int64
	Replicas        int
	// Memory keeps streams in memory (tests, short-lived scans).
	Memory bool
}

// DefaultRetention is what a deployment gets when it sets nothing.
var DefaultRetention = Retention{
	FacesMaxAge:     7 * 24 * time.Hour,
	FacesMaxBytes:   20 << 30,
	FramesMaxAge:    7 * 24 * time.Hour,
	FramesMaxBytes:  5 << 30,
	ScoresMaxAge:    30 * 24 * time.Hour,
	UploadsMaxAge:   7 * 24 * time.Hour,
	UploadsMaxBytes: 20 << 30,
	Replicas:        1,
}

func (r Retention) withDefaults() Retention {
	d := DefaultRetention
	if r.Memory {
		// Memory streams must fit the server's memory budget (75 % of RAM by default).
		d.FacesMaxBytes, d.FramesMaxBytes, d.UploadsMaxBytes = 2<<30, 512<<20, 256<<20
	}
	if r.FacesMaxAge == 0 {
		r.FacesMaxAge = d.FacesMaxAge
	}
	if r.FacesMaxBytes == 0 {
		r.FacesMaxBytes = d.FacesMaxBytes
	}
	if r.FramesMaxAge == 0 {
		r.FramesMaxAge = d.FramesMaxAge
	}
	if r.FramesMaxBytes == 0 {
		r.FramesMaxBytes = d.FramesMaxBytes
	}
	if r.ScoresMaxAge == 0 {
		r.ScoresMaxAge = d.ScoresMaxAge
	}
	if r.UploadsMaxAge == 0 {
		r.UploadsMaxAge = d.UploadsMaxAge
	}
	if r.UploadsMaxBytes == 0 {
		r.UploadsMaxBytes = d.UploadsMaxBytes
	}
	if r.Replicas == 0 {
		r.Replicas = d.Replicas
	}
	return r
}

// storage is where the streams and buckets keep their messages.
func (r Retention) storage() jetstream.StorageType {
	if r.Memory {
		return jetstream.MemoryStorage
	}
	return jetstream.FileStorage
}

// MaxCropPayload bounds one message; NATS' default max payload is 1 MB.
const MaxCropPayload = 1 << 20

// dedupWindow is how long JetStream remembers message ids: long enough to cover an ingest
// retry of a whole video.
const dedupWindow = 10 * time.Minute

// StreamConfigs returns the configurations of every stream of the system.
func StreamConfigs(r Retention) []jetstream.StreamConfig {
	r = r.withDefaults()
	storage := r.storage()
	return []jetstream.StreamConfig{
		{
			Name: StreamFaces, Subjects: []string{SubjectFacesPrefix + ">"},
			Retention: jetstream.LimitsPolicy, Storage: storage, Replicas: r.Replicas,
			MaxAge: r.FacesMaxAge, MaxBytes: r.FacesMaxBytes, MaxMsgSize: MaxCropPayload,
			Discard: jetstream.DiscardOld, Duplicates: dedupWindow,
			Description: "aligned face crops (work for detectors, archive for rescoring)",
		},
		{
			Name: StreamFrames, Subjects: []string{SubjectFramesPrefix + ">"},
			Retention: jetstream.LimitsPolicy, Storage: storage, Replicas: r.Replicas,
			MaxAge: r.FramesMaxAge, MaxBytes: r.FramesMaxBytes, MaxMsgSize: MaxCropPayload,
			Discard: jetstream.DiscardOld, Duplicates: dedupWindow, AllowDirect: true,
			Description: "downscaled frames with faces, for evidence images",
		},
		{
			Name: StreamScores, Subjects: []string{SubjectScoresPrefix + ">", SubjectEOSPrefix + ">"},
			Retention: jetstream.LimitsPolicy, Storage: storage, Replicas: r.Replicas,
			MaxAge: r.ScoresMaxAge, Discard: jetstream.DiscardOld, Duplicates: dedupWindow,
			Description: "per-crop scores and end-of-stream events",
		},
		{
			Name: StreamVerdicts, Subjects: []string{SubjectVerdictsPrefix + ">"},
			Retention: jetstream.LimitsPolicy, Storage: storage, Replicas: r.Replicas,
			MaxAge: r.ScoresMaxAge, MaxMsgsPerSubject: 100, Discard: jetstream.DiscardOld,
			Duplicates: dedupWindow, AllowDirect: true,
			Description: "published verdicts (JSON)",
		},
		{
			Name: StreamIngest, Subjects: []string{SubjectIngestWork},
			Retention: jetstream.WorkQueuePolicy, Storage: storage, Replicas: r.Replicas,
			Duplicates: dedupWindow, Description: "accepted submissions waiting for an ingest worker",
		},
	}
}

// DetectorConsumerConfig is the durable consumer shared by detector workers. AckWait bounds
// how long a crashed worker's crops wait before redelivery; MaxDeliver stops a poison crop
// from being retried forever (the worker also terminates malformed crops at once).
func DetectorConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: ConsumerDetector, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: 5, MaxAckPending: 4096,
		FilterSubject: SubjectFacesPrefix + ">", DeliverPolicy: jetstream.DeliverAllPolicy,
		Description: "detector workers",
	}
}

// AggregatorConsumerConfig is the durable consumer of the aggregator.
func AggregatorConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: ConsumerAggregator, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: 5, MaxAckPending: 8192,
		DeliverPolicy: jetstream.DeliverAllPolicy, Description: "aggregator",
	}
}

// IngestConsumerConfig is the durable consumer shared by ingest workers. A video is decoded by
// exactly one worker; AckWait is extended with in-progress acks while it decodes.
func IngestConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable: ConsumerIngest, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: time.Minute, MaxDeliver: 3, MaxAckPending: 64,
		Description: "ingest workers",
	}
}

// VerdictsKVConfig is the bucket of the latest verdict per video, with revision history.
func VerdictsKVConfig(r Retention) jetstream.KeyValueConfig {
	r = r.withDefaults()
	return jetstream.KeyValueConfig{
		Bucket: BucketVerdicts, History: 64, Storage: r.storage(), Replicas: r.Replicas,
		Description: "latest verdict per video id, with revision history",
	}
}

// EvidenceStoreConfig is the object store of evidence images.
func EvidenceStoreConfig(r Retention) jetstream.ObjectStoreConfig {
	r = r.withDefaults()
	return jetstream.ObjectStoreConfig{
		Bucket: BucketEvidence, Storage: r.storage(), Replicas: r.Replicas, TTL: r.FramesMaxAge,
		Description: "evidence images (JPEG) referenced by verdicts",
	}
}

// UploadsStoreConfig is the object store of uploaded videos.
func UploadsStoreConfig(r Retention) jetstream.ObjectStoreConfig {
	r = r.withDefaults()
	return jetstream.ObjectStoreConfig{
		Bucket: BucketUploads, Storage: r.storage(), Replicas: r.Replicas, TTL: r.UploadsMaxAge, MaxBytes: r.UploadsMaxBytes,
		Description: "videos uploaded through the HTTP API, until ingest has read them and the API lets them go",
	}
}
