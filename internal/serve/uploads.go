package serve

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// sweepEvery is how often uploads kept past their verdict are looked at.
const sweepEvery = time.Minute

// uploadFinished is called with every final verdict: with no retention the upload goes at
// once, otherwise the sweeper takes it once KeepUploads has passed.
func (s *Server) uploadFinished(videoID string) {
	if s.o.Config.Serve.KeepUploads > 0 || laev1.ValidateVideoID(videoID) != nil {
		return
	}
	s.removeUpload(videoID)
}

func (s *Server) removeUpload(videoID string) {
	dir := filepath.Join(s.upDir, videoID)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return // not an upload
	}
	if err := os.RemoveAll(dir); err != nil {
		s.log.Warn("remove upload", zap.String("video_id", videoID), zap.Error(err))
		return
	}
	s.log.Debug("upload removed", zap.String("video_id", videoID))
}

// sweepUploads removes the uploads whose final verdict is older than KeepUploads, including
// those a previous run of the server left behind (a timer would not survive a restart).
func (s *Server) sweepUploads(ctx context.Context, now time.Time) {
	entries, err := os.ReadDir(s.upDir)
	if err != nil {
		s.log.Warn("list uploads", zap.Error(err))
		return
	}
	for _, e := range entries {
		id := e.Name()
		if !e.IsDir() || laev1.ValidateVideoID(id) != nil {
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
