package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go/jetstream"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// errUploadGone is a permanent failure: the submission names an upload that is not in the
// uploads bucket (deleted, or past retention.uploads_max_age before ingest got to it).
var errUploadGone = errors.New("the uploaded file is no longer in the uploads bucket (deleted, or expired before ingest reached it)")

// localCopy is what the pipeline opens for a submission's URL: the URL itself, or for an upload
// (laev1.UploadURL) a temporary copy of its object in the uploads bucket, which release
// removes. The copy exists because FFmpeg seeks in most containers (an MP4's index may sit at
// its end), and the object's chunks can only be read in order.
func localCopy(ctx context.Context, js jetstream.JetStream, url string) (path string, release func(), err error) {
	object, ok := laev1.UploadObject(url)
	if !ok {
		return url, func() {}, nil
	}
	store, err := js.ObjectStore(ctx, laev1.BucketUploads)
	if err != nil {
		return "", nil, fmt.Errorf("open the uploads bucket: %w", err)
	}
	res, err := store.Get(ctx, object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return "", nil, errUploadGone
	}
	if err != nil {
		return "", nil, fmt.Errorf("read upload %s: %w", object, err)
	}
	defer func() { _ = res.Close() }()
	// The extension of the uploaded name helps FFmpeg probe raw formats that have no header.
	ext := ""
	if info, ierr := res.Info(); ierr == nil {
		ext = filepath.Ext(info.Metadata[laev1.UploadNameKey])
	}
	f, err := os.CreateTemp("", "lae-upload-*"+ext)
	if err != nil {
		return "", nil, fmt.Errorf("copy upload %s: %w", object, err)
	}
	release = func() { _ = os.Remove(f.Name()) }
	_, err = io.Copy(f, res)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		release()
		return "", nil, fmt.Errorf("copy upload %s: %w", object, err)
	}
	return f.Name(), release, nil
}
