package serve

import (
	"encoding/json"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMediaServesTheKeptUpload: the page's player gets the uploaded file whole or by range
// while it is kept (lae serve keeps uploads a day after the verdict); a URL submission and a
// deleted scan have none.
func TestMediaServesTheKeptUpload(t *testing.T) {
	s := startServer(t, nil)
	require.Positive(t, s.o.Config.Serve.KeepUploads, "lae serve keeps uploads for the player")
	clip := faceVideo(t, t.TempDir(), "clip.mp4", 10)
	want, err := os.ReadFile(clip)
	require.NoError(t, err)
	f, err := os.Open(clip)
	require.NoError(t, err)
	code, body := upload(t, baseURL(s)+"/api/scans", "clip.mp4", f, nil)
	_ = f.Close()
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var sub submitted
	require.NoError(t, json.Unmarshal(body, &sub))
	waitDone(t, s, sub.VideoID, 2*time.Minute)
	media := baseURL(s) + "/api/scans/" + sub.VideoID + "/media"

	code, got, hdr := get(t, media)
	require.Equal(t, http.StatusOK, code, "%s", got)
	require.Equal(t, want, got, "the whole upload after its verdict")
	require.Equal(t, "video/mp4", hdr.Get("Content-Type"))
	require.Equal(t, "bytes", hdr.Get("Accept-Ranges"))

	req, err := http.NewRequest(http.MethodGet, media, nil)
	require.NoError(t, err)
	req.Header.Set("Range", "bytes=100-199")
	code, got, hdr = do(t, req)
	require.Equal(t, http.StatusPartialContent, code)
	require.Equal(t, want[100:200], got)
	require.Equal(t, "bytes 100-199/"+itoa(len(want)), hdr.Get("Content-Range"))

	code, got, _ = get(t, baseURL(s)+"/api/scans/no-such-scan/media")
	require.Equal(t, http.StatusNotFound, code, "%s", got)

	req, err = http.NewRequest(http.MethodDelete, baseURL(s)+"/api/scans/"+sub.VideoID, nil)
	require.NoError(t, err)
	code, got, _ = do(t, req)
	require.Equal(t, http.StatusNoContent, code, "%s", got)
	code, got, _ = get(t, media)
	require.Equal(t, http.StatusNotFound, code, "a deleted scan's media: %s", got)
}
