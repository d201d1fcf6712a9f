// Package laev1 is the v1 contract between the lae services: protobuf messages for the
// internal subjects (faces, frames, scores, end-of-stream), JSON messages for the public ones
// (submit, verdicts), subject names, and the JetStream stream, consumer and bucket
// configurations. Every service imports it; nothing else defines a subject or a stream.
package laev1

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Subjects. Per-video subjects end with the video id so that a consumer or a permission can be
// scoped to one video, and so JetStream can look up the last message of a video cheaply.
const (
	// SubjectSubmit takes a JSON SubmitRequest (request-reply; reply is a SubmitReply).
	SubjectSubmit = "lae.submit"
	// SubjectIngestWork is the work-queue subject that ingest workers pull accepted submissions from.
	SubjectIngestWork = "lae.ingest.work"
	// SubjectFacesPrefix + video id carries FaceCrop (protobuf).
	SubjectFacesPrefix = "lae.faces."
	// SubjectFramesPrefix + video id + "." + frame index carries FrameImage (protobuf).
	SubjectFramesPrefix = "lae.frames."
	// SubjectScoresPrefix + video id carries FrameScore (protobuf).
	SubjectScoresPrefix = "lae.scores."
	// SubjectEOSPrefix + video id carries EndOfStream (protobuf).
	SubjectEOSPrefix = "lae.eos."
	// SubjectVerdictsPrefix + video id carries Verdict (JSON), one message per revision/update.
	SubjectVerdictsPrefix = "lae.verdicts."
	// SubjectProgressPrefix + video id carries IngestProgress (JSON) a few times a second while
	// ingest reads the video. It is core NATS, not stored: a follower that misses one sees the
	// next, and the end-of-stream has the final counts.
	SubjectProgressPrefix = "lae.progress."
)

// ProgressSubject is the subject of the ingest progress of one video.
func ProgressSubject(videoID string) string { return SubjectProgressPrefix + videoID }

// IngestProgress is how far ingest has read one video (SubjectProgressPrefix).
type IngestProgress struct {
	VideoID        string `json:"video_id"`
	FramesSampled  uint64 `json:"frames_sampled"`
	CropsPublished uint64 `json:"crops_published"`
	// MediaSeconds is the media time of the latest sampled frame.
	MediaSeconds float64 `json:"media_seconds"`
	// DurationSeconds is the source's declared duration (0 = unknown or live); a submission's
	// max_duration_s may stop ingest earlier.
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
}

// UploadNameKey is the BucketUploads object metadata key of the uploaded file's name, as the
// API stored it (letters, digits and ._- only).
const UploadNameKey = "name"

// uploadScheme prefixes the URL of a submission whose video is an object of BucketUploads.
const uploadScheme = "upload:"

// UploadURL is the submission URL of an uploaded video (BucketUploads object name).
func UploadURL(object string) string { return uploadScheme + object }

// UploadObject is the BucketUploads object an upload URL names; ok is false for any other URL.
func UploadObject(url string) (object string, ok bool) {
	object, ok = strings.CutPrefix(url, uploadScheme)
	if !ok || ValidateVideoID(object) != nil {
		return "", false
	}
	return object, true
}

// videoIDPattern keeps ids usable as one NATS subject token and as a KV key and file name.
var videoIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// ValidateVideoID reports whether id can be used as a video id.
func ValidateVideoID(id string) error {
	if !videoIDPattern.MatchString(id) {
		return fmt.Errorf("invalid video id %q: want 1-128 characters of [A-Za-z0-9_-]", id)
	}
	return nil
}

// FacesSubject is the subject of the face crops of one video.
func FacesSubject(videoID string) string { return SubjectFacesPrefix + videoID }

// FrameSubject is the subject of one frame image of one video.
func FrameSubject(videoID string, frameIndex uint64) string {
	return fmt.Sprintf("%s%s.%d", SubjectFramesPrefix, videoID, frameIndex)
}

// ScoresSubject is the subject of the scores of one video.
func ScoresSubject(videoID string) string { return SubjectScoresPrefix + videoID }

// EOSSubject is the subject of the end-of-stream event of one video.
func EOSSubject(videoID string) string { return SubjectEOSPrefix + videoID }

// VerdictSubject is the public subject of the verdicts of one video.
func VerdictSubject(videoID string) string { return SubjectVerdictsPrefix + videoID }

// CropMsgID is the de-duplication id of a face crop: a re-published crop (ingest retry) is
// dropped by JetStream instead of being scored twice.
func CropMsgID(videoID string, frameIndex uint64, faceIndex uint32) string {
	return fmt.Sprintf("crop/%s/%d/%d", videoID, frameIndex, faceIndex)
}

// ScoreMsgID is the de-duplication id of a score: a redelivered crop scored again by another
// worker produces the same id, so the aggregator sees one score per crop and revision.
func ScoreMsgID(videoID string, frameIndex uint64, faceIndex uint32, revision uint32) string {
	return fmt.Sprintf("score/%s/%d/%d/%d", videoID, frameIndex, faceIndex, revision)
}

// EOSMsgID is the de-duplication id of an end-of-stream event.
func EOSMsgID(videoID string, revision uint32) string {
	return fmt.Sprintf("eos/%s/%d", videoID, revision)
}

// FrameMsgID is the de-duplication id of a frame image.
func FrameMsgID(videoID string, frameIndex uint64) string {
	return fmt.Sprintf("frame/%s/%d", videoID, frameIndex)
}

// NewVideoID returns a fresh video id: UTC time (so ids sort by submission) and 64 random bits.
func NewVideoID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "v" + time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b[:])
}
