package serve

import (
	"os"
	"path/filepath"

	"go.uber.org/zap"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Upload names: what the page, the API and the report call an upload is its original file
// name, which the stored file (a sanitised name, removed after the verdict) does not keep. It is
// kept in <store>/names/<video id> from the upload until the scan is deleted, so a restarted
// server still shows it rather than a path on the server.

// maxNameFile bounds what is read back from a kept name (baseName caps names at 255 bytes).
const maxNameFile = 1024

// keepName records an upload's original name; a failure costs only the name after a restart.
func (s *Server) keepName(videoID, name string) {
	if name == "" {
		return
	}
	if err := keepFile(s.nameDir, videoID, []byte(name)); err != nil {
		s.log.Warn("keep upload name (shown as its path after a restart)", zap.String("video_id", videoID), zap.Error(err))
	}
}

// uploadName is the name of a scan's upload: the tracker's, else the kept one, else "".
func (s *Server) uploadName(videoID, tracked string) string {
	if tracked != "" || s.nameDir == "" || laev1.ValidateVideoID(videoID) != nil {
		return tracked
	}
	f, err := os.Open(filepath.Join(s.nameDir, videoID))
	if err != nil {
		return ""
	}
	defer func() { _ = f.Close() }()
	b := make([]byte, maxNameFile)
	n, _ := f.Read(b)
	return baseName(string(b[:n]))
}

// dropName forgets a kept upload name.
func (s *Server) dropName(videoID string) {
	if err := dropKept(s.nameDir, videoID); err != nil {
		s.log.Warn("remove kept upload name", zap.String("video_id", videoID), zap.Error(err))
	}
}
