package serve

import (
	"context"
	"errors"
	"io"
	"net/http"

	"github.com/nats-io/nats.go/jetstream"

	laev1 "github.com/lae-screening/lae/schemas/v1"
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
	info, err := s.uploads.GetInfo(r.Context(), id)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		httpError(w, http.StatusNotFound, "no uploaded media for scan "+id+" (URL submissions are not kept; uploads are kept for serve.keep_uploads after the verdict)")
		return
	}
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, "read uploaded media: "+err.Error())
		return
	}
	// The stored name is sanitised ([A-Za-z0-9._-]): safe in a header, and its extension picks
	// the content type.
	name := info.Metadata[laev1.UploadNameKey]
	if name == "" {
		name = "upload"
	}
	body := &objectReader{ctx: r.Context(), store: s.uploads, name: id, size: int64(info.Size)}
	defer body.Close()
	w.Header().Set("Content-Disposition", `inline; filename="`+name+`"`)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	http.ServeContent(w, r, name, info.ModTime, body)
}

// objectReader is an io.ReadSeeker over an object, for http.ServeContent. An object's chunks
// can only be read in order, so a read after a seek opens the object and skips to the
// position: a range request costs reading the object up to the range's end, which the player's
// few requests per scan can afford. Seeking alone reads nothing (ServeContent seeks to the
// end to learn the size).
type objectReader struct {
	ctx   context.Context
	store jetstream.ObjectStore
	name  string
	size  int64

	pos int64
	res jetstream.ObjectResult // open at pos, or nil
}

func (o *objectReader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekCurrent:
		offset += o.pos
	case io.SeekEnd:
		offset += o.size
	}
	if offset < 0 {
		return o.pos, errors.New("seek before the start of the upload")
	}
	if offset != o.pos {
		o.Close()
		o.pos = offset
	}
	return o.pos, nil
}

func (o *objectReader) Read(p []byte) (int, error) {
	if o.pos >= o.size {
		return 0, io.EOF
	}
	if o.res == nil {
		res, err := o.store.Get(o.ctx, o.name)
		if err != nil {
			return 0, err
		}
		if _, err := io.CopyN(io.Discard, res, o.pos); err != nil {
			_ = res.Close()
			return 0, err
		}
		o.res = res
	}
	n, err := o.res.Read(p)
	o.pos += int64(n)
	return n, err
}

// Close releases the open object, if any.
func (o *objectReader) Close() {
	if o.res != nil {
		_ = o.res.Close()
		o.res = nil
	}
}
