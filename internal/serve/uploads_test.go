package serve

import (
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestUploadsRemovedAfterTheirScan: an uploaded file is deleted once its scan has a final
// verdict (no retention by default); with --keep-uploads it stays until the sweep after the
// retention, and the report still renders without it.
func TestUploadsRemovedAfterTheirScan(t *testing.T) {
	for _, keep := range []time.Duration{0, time.Hour} {
		t.Run(keep.String(), func(t *testing.T) {
			s := startServer(t, func(o *Options) { o.Config.Serve.KeepUploads = keep })
			video := faceVideo(t, t.TempDir(), "clip.mp4", 15)
			f, err := os.Open(video)
			require.NoError(t, err)
			defer f.Close()
			code, body := upload(t, baseURL(s)+"/api/scans", "clip.mp4", f, nil)
			require.Equal(t, http.StatusAccepted, code, "%s", body)
			var sub submitted
			require.NoError(t, json.Unmarshal(body, &sub))
			waitDone(t, s, sub.VideoID, 3*time.Minute)

			gone := func() bool { return !slices.Contains(uploadObjects(t, s.uploads), sub.VideoID) }
			if keep == 0 {
				require.Eventually(t, gone, time.Minute, 20*time.Millisecond, "upload removed after the final verdict")
			} else {
				require.False(t, gone(), "kept within the retention")
				s.sweepUploads(t.Context(), time.Now().Add(30*time.Minute))
				require.False(t, gone(), "kept within the retention")
				s.sweepUploads(t.Context(), time.Now().Add(2*keep))
				require.True(t, gone(), "removed by the sweep after the retention")
			}
			code, _, _ = get(t, baseURL(s)+"/api/scans/"+sub.VideoID+"/report")
			require.Equal(t, http.StatusOK, code, "the report does not need the upload")
		})
	}
}
