package serve

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Uploads live in the JetStream object store laev1.BucketUploads, one object per scan named
// by its video id, and are submitted as laev1.UploadURL: the ingest worker that takes the scan
// reads the object, on this machine or another, so `lae serve --api-only` and the ingest roles
// share no disk. An upload stays until serve.keep_uploads after its final verdict (the page's
// player plays it), or until its scan is deleted; the bucket's own age limit catches what this
// process never got to.

// sweepEvery is how often uploads kept past their verdict are looked at.
const sweepEvery = time.Minute

// storeError is an upload the object store could not take: the server's trouble (503), not
// the caller's.
type storeError struct{ err error }

func (e storeError) Error() string { return e.err.Error() }
func (e storeError) Unwrap() error { return e.err }

// saveUpload stores an upload as the scan's object and returns its hex SHA-256 (the
// de-duplication key; ingest records the same digest as the verdict's source.sha256). A read
// error (the client's) is returned as it is, a store error as a storeError. A failed Put
// leaves no chunk behind; the caller drops the upload (dropUpload) as for any other refusal.
func (s *Server) saveUpload(ctx context.Context, videoID, name string, src io.Reader) (string, error) {
	h := sha256.New()
	var readErr error
	body := readerFunc(func(p []byte) (int, error) {
		n, err := src.Read(p)
		h.Write(p[:n])
		if err != nil && !errors.Is(err, io.EOF) {
			readErr = err
		}
		return n, err
	})
	meta := jetstream.ObjectMeta{Name: videoID, Description: "upload of scan " + videoID,
		Metadata: map[string]string{laev1.UploadNameKey: storedName(name)}}
	if _, err := s.uploads.Put(ctx, meta, body); err != nil {
		if readErr != nil {
			return "", fmt.Errorf("read upload %s: %w", name, readErr)
		}
		return "", storeError{fmt.Errorf("store upload %s: %w", name, err)}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// readerFunc is an io.Reader made of a function.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// uploadFinished is called with every final verdict: with no retention the upload goes at
// once, otherwise the sweeper takes it once KeepUploads has passed.
func (s *Server) uploadFinished(videoID string) {
	if s.o.Config.Serve.KeepUploads > 0 || laev1.ValidateVideoID(videoID) != nil {
		return
	}
	s.removeUpload(videoID)
}

// removeUpload deletes a scan's upload, if it has one.
func (s *Server) removeUpload(videoID string) {
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	err := s.uploads.Delete(ctx, videoID)
	switch {
	case errors.Is(err, jetstream.ErrObjectNotFound):
	case err != nil:
		s.log.Warn("remove upload", zap.String("video_id", videoID), zap.Error(err))
	default:
		s.log.Debug("upload removed", zap.String("video_id", videoID))
	}
}

// sweepUploads removes the uploads whose final verdict is older than KeepUploads, including
// those of verdicts this process did not see (it was down, or another process serves them).
func (s *Server) sweepUploads(ctx context.Context, now time.Time) {
	objects, err := s.uploads.List(ctx)
	if err != nil {
		if !errors.Is(err, jetstream.ErrNoObjectsFound) {
			s.log.Warn("list uploads", zap.Error(err))
		}
		return
	}
	for _, o := range objects {
		id := o.Name
		if laev1.ValidateVideoID(id) != nil {
			continue
		}
		ent, err := s.kv.Get(ctx, id)
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyNotFound) {
				s.log.Warn("sweep uploads: verdict lookup", zap.String("video_id", id), zap.Error(err))
			}
			continue // still being scanned
		}
		var v laev1.Verdict
		if json.Unmarshal(ent.Value(), &v) != nil || !v.Final {
			continue
		}
		if now.Sub(ent.Created()) >= s.o.Config.Serve.KeepUploads {
			s.removeUpload(id)
		}
	}
}
