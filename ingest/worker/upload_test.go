package worker

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// TestLocalCopy: an upload URL opens as a temporary copy of its object, removed on release;
// other URLs open as they are; a missing object is a permanent failure.
func TestLocalCopy(t *testing.T) {
	srv := testenv.StartNATS(t)
	ctx := context.Background()
	store, err := srv.JS.ObjectStore(ctx, laev1.BucketUploads)
	require.NoError(t, err)
	content := make([]byte, 300<<10) // several chunks
	for i := range content {
		content[i] = byte(i * 7)
	}
	_, err = store.Put(ctx, jetstream.ObjectMeta{Name: "v1", Metadata: map[string]string{laev1.UploadNameKey: "clip.mkv"}},
		bytes.NewReader(content))
	require.NoError(t, err)

	path, release, err := localCopy(ctx, srv.JS, laev1.UploadURL("v1"))
	require.NoError(t, err)
	require.Equal(t, ".mkv", filepath.Ext(path), "the uploaded name's extension helps FFmpeg probe")
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, content, got)
	release()
	_, err = os.Stat(path)
	require.ErrorIs(t, err, os.ErrNotExist, "released")

	for _, url := range []string{"https://cdn.test/a.mp4", "/data/a.mp4"} {
		path, release, err := localCopy(ctx, srv.JS, url)
		require.NoError(t, err)
		require.Equal(t, url, path, "not an upload: opened as it is")
		release()
	}

	_, _, err = localCopy(ctx, srv.JS, laev1.UploadURL("gone"))
	require.ErrorIs(t, err, errUploadGone)
}
