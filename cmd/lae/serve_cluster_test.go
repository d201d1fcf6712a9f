package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// serveScan is the part of GET /api/scans/{id} (a verdict with its state, or the tracked
// scan while it runs) and of GET /api/scans's entries this test reads.
type serveScan struct {
	VideoID        string  `json:"video_id"`
	State          string  `json:"state"`
	Verdict        string  `json:"verdict"`
	Final          bool    `json:"final"`
	Error          string  `json:"error"`
	CropsPublished uint64  `json:"crops_published"`
	CropsScored    uint64  `json:"crops_scored"`
	IngestDone     bool    `json:"ingest_done"`
	MediaSeconds   float64 `json:"media_seconds"`
}

// TestServeAPIOnlyOnDeployNATS runs `lae serve --api-only` the way deploy/k8s and
// deploy/compose.yaml do: a nats-server with the deployment's config, `lae provision` as
// admin, ingest, detect and aggregate as their users, and serve as user serve with nothing
// but its HTTP API. An upload goes through serve into the uploads bucket, ingest reads it from
// there, the roles score it, and serve reports the verdict, serves the uploaded bytes back
// (with ranges) and deletes the scan; a JSON submission with a caller-chosen id goes the same
// way. The server refuses nothing any of them does: the users' grants are what they need.
func TestServeAPIOnlyOnDeployNATS(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	dir := t.TempDir()
	srv := newNATSProc(t, dir, "lae-serve-test", true)
	_, stderr, code := runLae(t, time.Minute, "provision", "--config", srv.asUser("admin"))
	require.Equal(t, 0, code, stderr)

	// Ingest copies an upload into TMPDIR while it scans it (deploy/k8s: an emptyDir) and
	// removes the copy after.
	ingestTmp := filepath.Join(dir, "ingest-tmp")
	require.NoError(t, os.Mkdir(ingestTmp, 0o755))
	// The source policy admits the test's own HTTP server below (loopback is refused by
	// default), for serve's check of a submitted URL and ingest's when it opens it.
	env := []string{"LAE_NATS_URLS=" + srv.URL, "LAE_LOG_LEVEL=debug", "LAE_DETECTOR_BATCH_SIZE=4", "LAE_INGEST_SAMPLE_FPS=10",
		"LAE_SOURCES_ALLOW_CIDRS=127.0.0.1/32"}
	login := func(user string, extra ...string) []string {
		return append(append([]string{"LAE_NATS_USER=" + user, "LAE_NATS_PASSWORD=pw-" + user}, env...), extra...)
	}
	// No tokens: the API is open, which lae serve allows on a loopback address only.
	serve := startRole(t, dir, "serve", login("serve"), "serve", "--api-only", "--store", filepath.Join(dir, "serve-store"))
	procs := []*proc{
		serve,
		startRole(t, dir, "ingest", login("ingest", "TMPDIR="+ingestTmp), "ingest"),
		startRole(t, dir, "detect", login("detector"), "detect"),
		startRole(t, dir, "aggregate", login("aggregator"), "aggregate"),
	}
	api := "http://" + serve.http + "/api/scans"

	clip := filepath.Join(dir, "clip.mp4")
	testenv.WriteClip(t, clip, testenv.Clip{Width: 480, Height: 360, Frames: 30, FPS: 10, Face: testenv.Drawn, DrawnRes: 160,
		Seed: 5, Size: 150, From: image.Pt(100, 60), To: image.Pt(140, 70)})
	clipBytes, err := os.ReadFile(clip)
	require.NoError(t, err)

	// The upload: multipart, field "file".
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("file", "clip.mp4")
	require.NoError(t, err)
	_, err = fw.Write(clipBytes)
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	resp, err := http.Post(api, mw.FormDataContentType(), &body)
	require.NoError(t, err)
	reply, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", reply)
	var accepted struct {
		VideoID string `json:"video_id"`
	}
	require.NoError(t, json.Unmarshal(reply, &accepted))
	id := accepted.VideoID
	require.NoError(t, laev1.ValidateVideoID(id))

	final := waitDone(t, api, id)
	require.Contains(t, []string{laev1.VerdictReal, laev1.VerdictFake}, final.Verdict, "%s: %s", id, final.Error)
	require.Positive(t, final.CropsScored, "the cluster's detector scored the upload's crops")

	// The scans list carries ingest's counts (from its end-of-stream, after its progress).
	listed := findListed(t, api, id)
	require.True(t, listed.IngestDone)
	require.Positive(t, listed.CropsPublished)
	require.Equal(t, listed.CropsPublished, final.CropsScored, "crops published = crops scored")

	// The uploaded bytes come back from the uploads bucket, whole and by range.
	got, code, err := httpGet(api + "/" + id + "/media")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.True(t, bytes.Equal(clipBytes, []byte(got)), "media differs from the upload (%d bytes, want %d)", len(got), len(clipBytes))
	req, err := http.NewRequest(http.MethodGet, api+"/"+id+"/media", nil)
	require.NoError(t, err)
	req.Header.Set("Range", "bytes=1000-1999")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	part, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusPartialContent, resp.StatusCode)
	require.Equal(t, clipBytes[1000:2000], part)

	// Ingest removed its copy of the upload.
	left, err := os.ReadDir(ingestTmp)
	require.NoError(t, err)
	require.Empty(t, left, "ingest left files in TMPDIR")

	// A JSON submission of a URL with a caller-chosen id: serve looks the id up (verdict,
	// crops, end-of-stream) before it queues the work; ingest fetches the URL.
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, clip) }))
	defer web.Close()
	chosen := "chosen-" + laev1.NewVideoID()
	js, err := json.Marshal(map[string]string{"url": web.URL + "/clip.mp4", "video_id": chosen})
	require.NoError(t, err)
	resp, err = http.Post(api, "application/json", bytes.NewReader(js))
	require.NoError(t, err)
	reply, err = io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, "%s", reply)
	second := waitDone(t, api, chosen)
	require.Equal(t, final.Verdict, second.Verdict, "the same clip, the same verdict")

	// DELETE removes the verdicts, the evidence and the upload.
	req, err = http.NewRequest(http.MethodDelete, api+"/"+id, nil)
	require.NoError(t, err)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusNoContent, resp.StatusCode)
	_, code, err = httpGet(api + "/" + id)
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code, "the deleted scan is gone")
	_, code, err = httpGet(api + "/" + id + "/media")
	require.NoError(t, err)
	require.Equal(t, http.StatusNotFound, code, "the deleted scan's upload is gone")

	// Everything above ran within the grants: nats-server logs a refused publish or
	// subscription as "Publish Violation" / "Subscription Violation", and tells the client
	// "Permissions Violation ...", which the lae processes log.
	var violations []string
	for _, p := range append([]*proc{srv.p}, procs...) {
		log, err := os.ReadFile(p.log)
		require.NoError(t, err)
		for _, l := range strings.Split(string(log), "\n") {
			if violationRe.MatchString(l) {
				violations = append(violations, p.name+": "+l)
			}
		}
	}
	require.Empty(t, violations, "a process needs subjects its user's grants lack (deploy/nats/nats-server.conf)")
}

// violationRe matches nats-server's log line of a refused publish or subscription and the
// error a refused client is sent.
var violationRe = regexp.MustCompile(`(Publish|Subscription|Permissions) Violation`)

// waitDone polls GET /api/scans/{id} until the scan is done and returns its final verdict;
// it logs how far the running scan's progress got before.
func waitDone(t *testing.T, api, id string) serveScan {
	t.Helper()
	var last serveScan
	var maxMedia float64
	require.Eventually(t, func() bool {
		b, code, err := httpGet(api + "/" + id)
		if err != nil || code != http.StatusOK {
			return false
		}
		var sc serveScan
		if json.Unmarshal([]byte(b), &sc) != nil {
			return false
		}
		maxMedia = max(maxMedia, sc.MediaSeconds)
		last = sc
		return sc.State == "done"
	}, 3*time.Minute, 100*time.Millisecond, "scan %s done", id)
	t.Logf("scan %s: %s (progress seen before done: %.1f s of media)", id, last.Verdict, maxMedia)
	require.True(t, last.Final)
	return last
}

// findListed returns id's entry of GET /api/scans.
func findListed(t *testing.T, api, id string) serveScan {
	t.Helper()
	b, code, err := httpGet(api)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, b)
	var page struct {
		Scans []serveScan `json:"scans"`
	}
	require.NoError(t, json.Unmarshal([]byte(b), &page))
	for _, sc := range page.Scans {
		if sc.VideoID == id {
			return sc
		}
	}
	require.Fail(t, fmt.Sprintf("scan %s not in GET /api/scans", id))
	return serveScan{}
}
