package serve

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestUploadNameSurvivesRestart: an upload's original name (spaces and all, which the stored
// file does not keep) is what the scan, the list and the report show, before and after the
// server restarts on the same store; deleting the scan forgets it.
func TestUploadNameSurvivesRestart(t *testing.T) {
	store := t.TempDir()
	opts := func(o *Options) {
		// On disk: the verdicts must outlive the first server, as in a deployment.
		o.Config.Store, o.Config.Retention.Memory = store, false
	}
	const name = "Interview – take 2 (final).mp4"
	clip := faceVideo(t, t.TempDir(), "clip.mp4", 10)

	first := startServer(t, opts)
	f, err := os.Open(clip)
	require.NoError(t, err)
	code, body := upload(t, baseURL(first)+"/api/scans", name, f, nil)
	_ = f.Close()
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	var sub submitted
	require.NoError(t, json.Unmarshal(body, &sub))
	require.Equal(t, name, waitDone(t, first, sub.VideoID, 2*time.Minute).Name)
	first.Shutdown(t.Context())

	s := startServer(t, opts)
	code, body, _ = get(t, baseURL(s)+"/api/scans/"+sub.VideoID)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var v verdictBody
	require.NoError(t, json.Unmarshal(body, &v))
	require.Equal(t, name, v.Name, "the scan after a restart")

	code, body, _ = get(t, baseURL(s)+"/api/scans")
	require.Equal(t, http.StatusOK, code, "%s", body)
	var page struct {
		Scans []Scan `json:"scans"`
	}
	require.NoError(t, json.Unmarshal(body, &page))
	require.Len(t, page.Scans, 1)
	require.Equal(t, name, page.Scans[0].Name, "the list after a restart")

	code, body, _ = get(t, baseURL(s)+"/api/scans/"+sub.VideoID+"/report")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(body), "Interview – take 2 (final).mp4 (uploaded)", "the report after a restart")

	req, err := http.NewRequest(http.MethodDelete, baseURL(s)+"/api/scans/"+sub.VideoID, nil)
	require.NoError(t, err)
	code, body, _ = do(t, req)
	require.Equal(t, http.StatusNoContent, code, "%s", body)
	_, err = os.Stat(filepath.Join(store, "names", sub.VideoID))
	require.ErrorIs(t, err, os.ErrNotExist, "deleting the scan forgets its name")
}
