package laev1

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Verdict labels.
const (
	VerdictFake    = "fake"
	VerdictReal    = "real"
	VerdictUnknown = "unknown" // no usable face (none found, or all too small): absence of evidence is not evidence of "real"
	VerdictError   = "error"   // the input could not be scanned
)

// Verdict is the public per-video result, published as JSON on lae.verdicts.<video_id> and
// stored in the verdicts KV bucket. verdict.schema.json describes it; keep both in step.
type Verdict struct {
	VideoID string `json:"video_id"`
	Input   string `json:"input"`
	// Verdict is fake, real, unknown or error.
	Verdict string `json:"verdict"`
	// Score is the video-level fake score the rule produced, in [0,1].
	Score     float64 `json:"score"`
	Threshold float64 `json:"threshold"`
	// Rule names the aggregation rule (mean, topk_mean, max_face_mean).
	Rule         string `json:"rule"`
	Model        string `json:"model"`
	ModelVersion string `json:"model_version"`
	// Revision counts rescoring runs (0 = first scoring).
	Revision int `json:"revision"`
	// Final is false for rolling updates of a live stream.
	Final          bool   `json:"final"`
	FramesDecoded  uint64 `json:"frames_decoded"`
	FramesSampled  uint64 `json:"frames_sampled"`
	FramesWithFace uint64 `json:"frames_with_face"`
	Faces          uint64 `json:"faces"`
	CropsScored    uint64 `json:"crops_scored"`
	CropErrors     uint64 `json:"crop_errors"`
	// FacesTooSmall counts faces ingest found but did not score because they were too small
	// to judge (eyes closer than its minimum distance in source pixels, --min-eye-px): they
	// are in neither Faces nor CropsScored. A video whose only faces were too small is
	// "unknown".
	FacesTooSmall uint64 `json:"faces_too_small"`
	// Complete is false when ingest read noticeably less of the source than it declared (a
	// truncated file, a broken download) or stopped on an error: the verdict then speaks
	// for ReadShare of the video only. Always true for rolling verdicts and live streams.
	Complete bool `json:"complete"`
	// ReadShare is the share of the expected media time that was read, in [0,1]; absent when
	// the expected time is unknown (live streams).
	ReadShare *float64   `json:"read_share,omitempty"`
	Tracks    []Track    `json:"tracks"`
	Evidence  []Evidence `json:"evidence"`
	// Timeline is the per-sampled-frame max face score, for plots.
	Timeline  []TimelinePoint `json:"timeline,omitempty"`
	Error     string          `json:"error,omitempty"`
	CreatedAt time.Time       `json:"created_at"`

	// Source is what the input is (size, sha256, container, codec, resolution, frame rate,
	// duration, rotation), as ingest opened it; absent for rolling verdicts and when ingest
	// could not open the input.
	Source *SourceFacts `json:"source,omitempty"`
}

// SourceFacts describes the scanned input (from EndOfStream.source).
type SourceFacts struct {
	// FileSize and SHA256 are set for local files only.
	FileSize    uint64  `json:"file_size,omitempty"`
	SHA256      string  `json:"sha256,omitempty"`
	Container   string  `json:"container,omitempty"`
	Codec       string  `json:"codec,omitempty"`
	Width       int     `json:"width"`
	Height      int     `json:"height"`
	CodedWidth  int     `json:"coded_width"`
	CodedHeight int     `json:"coded_height"`
	FPS         float64 `json:"fps"`
	// DurationSeconds is the declared duration; 0 when unknown.
	DurationSeconds float64 `json:"duration_seconds"`
	Rotation        int     `json:"rotation"`
	Mirrored        bool    `json:"mirrored"`
}

// Track summarises one face track.
type Track struct {
	TrackID  uint64  `json:"track_id"`
	Faces    int     `json:"faces"`
	Score    float64 `json:"score"`
	Verdict  string  `json:"verdict"`
	FirstPTS float64 `json:"first_pts"`
	LastPTS  float64 `json:"last_pts"`
}

// Rect is a rectangle in frame pixel coordinates.
type Rect struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
	W float64 `json:"w"`
	H float64 `json:"h"`
}

// Evidence is one top-scoring face: where it is, and where in it the model saw the forgery.
type Evidence struct {
	FrameIndex uint64  `json:"frame_index"`
	PTSSeconds float64 `json:"pts_seconds"`
	TrackID    uint64  `json:"track_id"`
	FaceIndex  uint32  `json:"face_index"`
	Score      float64 `json:"score"`
	// FaceBox is the face detector's box in frame coordinates.
	FaceBox Rect `json:"face_box"`
	// HotRegion is the bounding box of the heatmap's hot region, mapped to frame coordinates.
	HotRegion Rect `json:"hot_region"`
	// Part names the face part under the heatmap's peak in the aligned crop ("mouth", "left
	// eye", "jaw line", ...; left and right are the subject's); "" when the map has no hot
	// region. See aggregator/evidence.PartAt.
	Part string `json:"part,omitempty"`
	// Image is the evidence image's name in the evidence object store ("" when none was made).
	Image string `json:"image,omitempty"`
}

// TimelinePoint is one sampled frame's score.
type TimelinePoint struct {
	FrameIndex uint64  `json:"frame_index"`
	PTSSeconds float64 `json:"pts_seconds"`
	Score      float64 `json:"score"`
	Faces      int     `json:"faces"`
}

// EvidenceObjectName is the object-store name of an evidence image.
func EvidenceObjectName(videoID string, revision int, frameIndex uint64, faceIndex uint32) string {
	return fmt.Sprintf("%s/r%d/f%06d_%d.jpg", videoID, revision, frameIndex, faceIndex)
}

// SubmitRequest is the JSON body of a request on lae.submit.
type SubmitRequest struct {
	URL string `json:"url"`
	// VideoID is optional; one is assigned when empty.
	VideoID string `json:"video_id,omitempty"`
	// SampleFPS is the sampling rate (0 = every frame; nil = service default).
	SampleFPS *float64 `json:"sample_fps,omitempty"`
	// MaxDurationSeconds stops ingest after this much media time (0 = no limit).
	MaxDurationSeconds float64 `json:"max_duration_s,omitempty"`
	Priority           int     `json:"priority,omitempty"`
	// Reference is the caller's own id, echoed in the reply.
	Reference string `json:"reference,omitempty"`
}

// SubmitReply answers a SubmitRequest.
type SubmitReply struct {
	VideoID   string `json:"video_id,omitempty"`
	Reference string `json:"reference,omitempty"`
	Error     string `json:"error,omitempty"`
}

// Provision creates or updates every stream, the verdicts bucket and the object stores.
// It is idempotent. In a deployment with per-role permissions only an operator may call it
// (`lae provision`): the roles' users may look streams up but not create, change or delete
// them; the roles call Provisioned instead.
func Provision(ctx context.Context, js jetstream.JetStream, r Retention) error {
	for _, cfg := range StreamConfigs(r) {
		if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("provision stream %s: %w", cfg.Name, err)
		}
	}
	if _, err := js.CreateOrUpdateKeyValue(ctx, VerdictsKVConfig(r)); err != nil {
		return fmt.Errorf("provision kv %s: %w", BucketVerdicts, err)
	}
	for _, cfg := range []jetstream.ObjectStoreConfig{EvidenceStoreConfig(r), UploadsStoreConfig(r)} {
		if _, err := js.CreateOrUpdateObjectStore(ctx, cfg); err != nil {
			return fmt.Errorf("provision object store %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}

// Provisioned reports the streams, buckets and stores that do not exist yet, looking them up
// only (a role's user may do that and nothing more). An empty result means the deployment
// is provisioned.
func Provisioned(ctx context.Context, js jetstream.JetStream) (missing []string, err error) {
	names := []string{"KV_" + BucketVerdicts, "OBJ_" + BucketEvidence, "OBJ_" + BucketUploads}
	for _, cfg := range StreamConfigs(Retention{}) {
		names = append(names, cfg.Name)
	}
	for _, name := range names {
		if _, err := js.Stream(ctx, name); err != nil {
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				missing = append(missing, name)
				continue
			}
			return nil, fmt.Errorf("look up stream %s: %w", name, err)
		}
	}
	return missing, nil
}
