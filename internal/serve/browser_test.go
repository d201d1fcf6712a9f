package serve

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// pageState is what the browser test reads off the live page.
type pageState struct {
	Conn     string `json:"conn"`
	Status   string `json:"status"`
	Video    string `json:"video"`
	Verdict  string `json:"verdict"`
	Images   int    `json:"images"`
	Loaded   int    `json:"loaded"`
	Points   int    `json:"points"`
	Listed   int    `json:"listed"`
	Progress string `json:"progress"`
}

const pageStateJS = `(() => {
  const imgs = [...document.querySelectorAll('#d-evidence img.evidence-img')];
  return {
    conn: document.getElementById('conn').dataset.state,
    status: document.getElementById('submit-status').textContent,
    video: document.getElementById('detail').dataset.video,
    verdict: document.getElementById('d-verdict').dataset.verdict || '',
    images: imgs.length,
    loaded: imgs.filter((i) => i.complete && i.naturalWidth > 0).length,
    points: document.querySelectorAll('#timeline-svg circle').length,
    listed: document.querySelectorAll('#scans li[data-state=done]').length,
    progress: document.getElementById('d-progress').textContent,
  };
})()`

// screenshotDir is where the page screenshots go: LAE_SCREENSHOT_DIR to keep them, else the
// test's temporary directory.
func screenshotDir(t *testing.T) string {
	if d := os.Getenv("LAE_SCREENSHOT_DIR"); d != "" {
		require.NoError(t, os.MkdirAll(d, 0o755))
		return d
	}
	return t.TempDir()
}

// TestBrowserSubmitShowsVerdictAndEvidence drives the live page in headless Chromium: a video
// uploaded through the page's form appears with its verdict, its score timeline and its
// evidence images, all as the API reports them; then the HTML report opens with its inline
// images.
func TestBrowserSubmitShowsVerdictAndEvidence(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	b := startBrowser(t, 1400, 1000)
	s := startServer(t, nil)
	video := faceVideo(t, t.TempDir(), "browser clip.mp4", 40)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	require.NoError(t, b.navigate(ctx, baseURL(s)+"/"))
	var st pageState
	require.Eventually(t, func() bool {
		return b.eval(ctx, pageStateJS, &st) == nil && st.Conn == "live"
	}, 30*time.Second, 100*time.Millisecond, "page never connected its event stream: %+v", st)

	// Choose the file in the form's file input and press the button, as a person would.
	require.NoError(t, b.call(ctx, "DOM.getDocument", nil, nil))
	fileInput, err := b.objectID(ctx, `document.getElementById('file')`)
	require.NoError(t, err)
	require.NoError(t, b.call(ctx, "DOM.setFileInputFiles", map[string]any{"files": []string{video}, "objectId": fileInput}, nil))
	require.NoError(t, b.eval(ctx, `document.getElementById('fps').value = '10'; document.getElementById('submit').click(); true`, nil))

	// The scan appears, runs, and ends with a verdict and loaded evidence images.
	dir := screenshotDir(t)
	sawPending := false
	require.Eventually(t, func() bool {
		if err := b.eval(ctx, pageStateJS, &st); err != nil {
			t.Logf("read page: %v", err)
			return false
		}
		if st.Video != "" && st.Verdict == "" && !sawPending {
			sawPending = true
			shot := filepath.Join(dir, "lae-serve-pending.png")
			require.NoError(t, b.screenshot(ctx, shot, false))
			t.Logf("in-progress screenshot: %s (%+v)", shot, st)
		}
		return (st.Verdict == laev1.VerdictFake || st.Verdict == laev1.VerdictReal) && st.Images > 0 && st.Loaded == st.Images
	}, 3*time.Minute, 250*time.Millisecond, "page never showed a verdict with evidence: %+v", st)
	require.True(t, sawPending, "the page showed the scan in progress before its verdict")
	require.NoError(t, laev1.ValidateVideoID(st.Video))
	require.Equal(t, 1, st.Listed, "the scan is listed as done")
	shot := filepath.Join(dir, "lae-serve-page.png")
	require.NoError(t, b.screenshot(ctx, shot, false))
	t.Logf("page screenshot: %s (%+v)", shot, st)

	// What the page shows is what the API says.
	code, body, _ := get(t, baseURL(s)+"/api/scans/"+st.Video)
	require.Equal(t, http.StatusOK, code)
	var v verdictBody
	require.NoError(t, json.Unmarshal(body, &v))
	require.Equal(t, StateDone, v.State)
	require.Equal(t, v.Verdict.Verdict, st.Verdict)
	require.Equal(t, len(v.Evidence), st.Images)
	require.Equal(t, len(v.Timeline), st.Points)
	require.Equal(t, "browser clip.mp4", v.Name)
	require.Equal(t, uint64(16), v.FramesSampled, "the form's sampling rate reached ingest")

	// The report opens in the browser under its lockdown policy, images inline and decoded.
	require.NoError(t, b.navigate(ctx, baseURL(s)+"/api/scans/"+st.Video+"/report"))
	var rep struct {
		Ready   string `json:"ready"`
		Verdict string `json:"verdict"`
		Images  int    `json:"images"`
		Loaded  int    `json:"loaded"`
	}
	require.Eventually(t, func() bool {
		err := b.eval(ctx, `(() => { const i = [...document.querySelectorAll('#evidence img')];
			const v = document.getElementById('verdict');
			return {ready: document.readyState, verdict: v ? v.textContent.trim() : '', images: i.length, loaded: i.filter((x) => x.complete && x.naturalWidth > 0).length}; })()`, &rep)
		// Under load the report can be caught half parsed: wait for the whole document.
		return err == nil && rep.Ready == "complete" && rep.Images > 0 && rep.Loaded == rep.Images
	}, 30*time.Second, 100*time.Millisecond, "report: %+v", rep)
	require.Equal(t, st.Verdict, rep.Verdict)
	withImage := 0
	for _, e := range v.Evidence {
		if e.Image != "" {
			withImage++
		}
	}
	require.Equal(t, withImage, rep.Images, "the report inlines every evidence image the verdict has")
	reportShot := filepath.Join(dir, "lae-serve-report.png")
	require.NoError(t, b.screenshot(ctx, reportShot, true))
	t.Logf("report screenshot: %s", reportShot)
}
