package serve

import (
	"net/http"
	"os"
	"path/filepath"
)

// handleMedia serves a scan's uploaded file, with ranges (the page's player seeks in it to an
// evidence timestamp). Only uploads have media, and only while they are kept: from the upload
// until serve.keep_uploads after the final verdict. A URL submission's source is never
// fetched again for it.
func (s *Server) handleMedia(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	path, ok := s.uploadPath(id)
	if !ok {
		httpError(w, http.StatusNotFound, "no uploaded media for scan "+id+" (URL submissions are not kept; uploads are kept for serve.keep_uploads after the verdict)")
		return
	}
	f, err := os.Open(path)
	if err != nil {
		httpError(w, http.StatusNotFound, "no uploaded media for scan "+id)
		return
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "read uploaded media: "+err.Error())
		return
	}
	// The stored name is sanitised ([A-Za-z0-9._-]): safe in a header, and its extension picks
	// the content type.
	w.Header().Set("Content-Disposition", `inline; filename="`+fi.Name()+`"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// uploadPath is the stored file of a scan's upload, if it is still kept.
func (s *Server) uploadPath(videoID string) (string, bool) {
	entries, err := os.ReadDir(filepath.Join(s.upDir, videoID))
	if err != nil {
		return "", false
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			return filepath.Join(s.upDir, videoID, e.Name()), true
		}
	}
	return "", false
}
