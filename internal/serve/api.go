package serve

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/aggregator/report"
	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/ingest/submit"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

//go:embed web
var webFS embed.FS

// requestTimeout bounds the NATS work of one API request.
const requestTimeout = 30 * time.Second

// pageHeaders lock the live page down to its own origin: it renders data from submissions
// (input names, errors), so a slip in escaping must not be able to run or load anything.
func pageHeaders(w http.ResponseWriter) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// submitted is the body of a 202 answer to POST /api/scans, and of a 200 answer for an upload
// that was scanned before (DuplicateOf names the earlier scan, which VideoID then is).
type submitted struct {
	VideoID     string `json:"video_id"`
	Reference   string `json:"reference,omitempty"`
	DuplicateOf string `json:"duplicate_of,omitempty"`
	State       string `json:"state,omitempty"`
}

// submission is a POST /api/scans body: the submit request plus what only the HTTP API takes.
type submission struct {
	laev1.SubmitRequest
	// WebhookURL receives this scan's final verdicts (besides serve.webhook_url).
	WebhookURL string `json:"webhook_url,omitempty"`
}

// received is a submission as received: a JSON body, or a multipart upload with its file.
type received struct {
	submission
	name    string // the file's name as sent
	sha256  string // hex digest of the stored bytes
	rescore bool   // scan again even if the same bytes were scanned before
}

func (s *Server) handleSubmit(w http.ResponseWriter, r *http.Request) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var up received
	switch ct {
	case "application/json":
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&up.submission); err != nil {
			httpError(w, http.StatusBadRequest, fmt.Sprintf("malformed submit request: %v", err))
			return
		}
		if !s.o.Config.Serve.AllowLocalPaths && isLocal(up.URL) {
			httpError(w, http.StatusBadRequest, "local paths are not accepted over HTTP: upload the file, or start lae serve with --allow-local-paths")
			return
		}
	case "multipart/form-data":
		var err error
		up, err = s.receiveUpload(w, r)
		if err != nil {
			code := http.StatusBadRequest
			switch {
			case errors.As(err, new(*http.MaxBytesError)):
				code = http.StatusRequestEntityTooLarge
			case errors.As(err, new(storeError)):
				code = http.StatusServiceUnavailable
			}
			httpError(w, code, err.Error())
			return
		}
	default:
		httpError(w, http.StatusUnsupportedMediaType, "send application/json (a submit request) or multipart/form-data (field \"file\")")
		return
	}
	req, name := &up.SubmitRequest, up.name
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	if up.WebhookURL != "" {
		if err := s.checkWebhook(ctx, up.WebhookURL); err != nil {
			s.dropUpload(name, req.VideoID)
			httpError(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if up.sha256 != "" {
		rescore := up.rescore || queryBool(r, "rescore")
		if earlier, state, dup := s.dedupe.claim(ctx, s, up.sha256, req.VideoID, rescore); dup {
			s.dropUpload(name, req.VideoID)
			s.log.Info("duplicate upload", zap.String("video_id", earlier), zap.String("sha256", up.sha256))
			w.Header().Set("Location", "/api/scans/"+earlier)
			writeJSON(w, http.StatusOK, submitted{VideoID: earlier, DuplicateOf: earlier, State: state, Reference: req.Reference})
			return
		}
	}
	// Held to the source policy here for a fast answer; ingest holds the URL to it again when
	// it connects (redirects and playlist entries included).
	// Admitted before the tracker records it: a caller-chosen id in use is refused here, and the
	// scan that owns it keeps its entry.
	if err := submit.Admit(ctx, s.js, req, s.sources); err != nil {
		s.dropUpload(name, req.VideoID)
		code := http.StatusBadRequest
		if errors.Is(err, submit.ErrVideoIDTaken) {
			code = http.StatusConflict
		}
		httpError(w, code, err.Error())
		return
	}
	if up.WebhookURL != "" {
		s.setHook(req.VideoID, up.WebhookURL)
	}
	// Tracked before it is queued, so the scan never appears without its upload's name.
	s.tracker.submitted(*req, name)
	s.keepName(req.VideoID, name)
	if err := submit.Enqueue(ctx, s.js, req); err != nil {
		s.dropUpload(name, req.VideoID)
		s.setHook(req.VideoID, "")
		s.log.Warn("queue submission", zap.String("video_id", req.VideoID), zap.Error(err))
		httpError(w, submitStatus(err), err.Error())
		return
	}
	// Time to verdict starts here, at acceptance, rather than at the first sampled frame.
	s.stack.Metrics.Accepted(req.VideoID, time.Now())
	s.log.Info("submission queued", zap.String("video_id", req.VideoID), zap.String("url", req.URL), zap.String("upload", name))
	w.Header().Set("Location", "/api/scans/"+req.VideoID)
	writeJSON(w, http.StatusAccepted, submitted{VideoID: req.VideoID, Reference: req.Reference, State: StatePending})
}

// queryBool reads a boolean query parameter ("1", "true", ...; anything else is false).
func queryBool(r *http.Request, name string) bool {
	b, err := strconv.ParseBool(r.URL.Query().Get(name))
	return err == nil && b
}

// isLocal reports whether a submitted URL names something on this machine: a plain path or
// any scheme other than the network ones ingest supports.
func isLocal(u string) bool {
	i := strings.Index(u, "://")
	if i <= 0 {
		return true
	}
	switch strings.ToLower(u[:i]) {
	case "http", "https", "rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "tcp":
		return false
	}
	return true
}

// unsafeName matches what an uploaded file's stored name may not contain.
var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// submitStatus is the HTTP status of a failed queueing: a conflict for an id in use, else the
// queue is unavailable.
func submitStatus(err error) int {
	if errors.Is(err, submit.ErrVideoIDTaken) {
		return http.StatusConflict
	}
	return http.StatusServiceUnavailable
}

// receiveUpload streams a multipart upload into the uploads bucket (uploads.go), hashing it, and
// returns the submission for it. Fields before or after the file are accepted.
func (s *Server) receiveUpload(w http.ResponseWriter, r *http.Request) (received, error) {
	up := received{submission: submission{SubmitRequest: laev1.SubmitRequest{VideoID: laev1.NewVideoID()}}}
	r.Body = http.MaxBytesReader(w, r.Body, s.o.Config.Serve.MaxUpload)
	mr, err := r.MultipartReader()
	if err != nil {
		return up, fmt.Errorf("read upload: %w", err)
	}
	fail := func(err error) (received, error) {
		s.dropUpload(up.name, up.VideoID)
		return up, err
	}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fail(fmt.Errorf("read upload: %w", err))
		}
		field := part.FormName()
		if field == "file" {
			if up.name != "" {
				return fail(errors.New("one file per upload"))
			}
			up.name = baseName(part.FileName())
			if up.name == "" {
				up.name = "upload"
			}
			sum, err := s.saveUpload(r.Context(), up.VideoID, up.name, part)
			if err != nil {
				return fail(err)
			}
			up.URL, up.sha256 = laev1.UploadURL(up.VideoID), sum
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, 2049))
		if err != nil {
			return fail(fmt.Errorf("read field %s: %w", field, err))
		}
		if len(b) > 2048 {
			return fail(fmt.Errorf("field %s too long", field))
		}
		val := strings.TrimSpace(string(b))
		switch field {
		case "webhook_url":
			up.WebhookURL = val
		case "rescore":
			if val != "" {
				if up.rescore, err = strconv.ParseBool(val); err != nil {
					return fail(fmt.Errorf("rescore %q: not a boolean", val))
				}
			}
		default:
			if err := setField(&up.SubmitRequest, field, val); err != nil {
				return fail(err)
			}
		}
	}
	if up.name == "" {
		return fail(errors.New(`no file in the upload (field "file")`))
	}
	return up, nil
}

// baseName drops any directory a client put in an uploaded file's name, with either slash
// (old browsers send C:\dir\file), and caps its length for display.
func baseName(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	if len(name) > 255 {
		name = name[len(name)-255:]
	}
	return strings.ToValidUTF8(name, "\uFFFD")
}

// storedName turns an uploaded file's name (anything the client sent) into a safe base name:
// no directories, no leading dots, only [A-Za-z0-9._-], at most 100 bytes, never empty.
func storedName(name string) string {
	name = baseName(name)
	base := unsafeName.ReplaceAllString(name, "_")
	if len(base) > 100 {
		base = base[len(base)-100:] // keep the extension
	}
	base = strings.TrimLeft(base, ".")
	if base == "" || strings.Trim(base, "_") == "" {
		base = "upload"
	}
	return base
}

// dropUpload removes the upload of a submission that was not queued.
func (s *Server) dropUpload(name, videoID string) {
	if name != "" && laev1.ValidateVideoID(videoID) == nil {
		s.removeUpload(videoID)
		s.dropName(videoID)
	}
}

// setField applies one form field of an upload to the submission.
func setField(req *laev1.SubmitRequest, field, val string) error {
	if val == "" {
		return nil
	}
	switch field {
	case "sample_fps":
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return fmt.Errorf("sample_fps %q: not a number", val)
		}
		req.SampleFPS = &f
	case "max_duration_s":
		f, err := strconv.ParseFloat(val, 64)
		if err != nil {
			return fmt.Errorf("max_duration_s %q: not a number", val)
		}
		req.MaxDurationSeconds = f
	case "reference":
		req.Reference = val
	case "priority":
		n, err := strconv.Atoi(val)
		if err != nil {
			return fmt.Errorf("priority %q: not an integer", val)
		}
		req.Priority = n
	}
	return nil
}

// verdictBody is a verdict with the scan's state, the answer of GET /api/scans/{id}.
type verdictBody struct {
	laev1.Verdict
	State string `json:"state"`
	Stage string `json:"stage,omitempty"`
	Name  string `json:"name,omitempty"`
}

// pathID validates the {id} path value.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := laev1.ValidateVideoID(id); err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return "", false
	}
	return id, true
}

// lookup finds the verdict of id: the latest, or with ?revision=N the last final one of that
// revision. found is false when there is none.
func (s *Server) lookup(ctx context.Context, r *http.Request, id string) (v laev1.Verdict, found bool, err error) {
	revArg := r.URL.Query().Get("revision")
	if revArg == "" {
		e, err := s.kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return v, false, nil
		}
		if err != nil {
			return v, false, fmt.Errorf("get verdict %s: %w", id, err)
		}
		if err := json.Unmarshal(e.Value(), &v); err != nil {
			return v, false, fmt.Errorf("decode verdict %s: %w", id, err)
		}
		return v, true, nil
	}
	rev, err := strconv.Atoi(revArg)
	if err != nil || rev < 0 {
		return v, false, fmt.Errorf("revision %q: %w", revArg, errBadRequest)
	}
	hist, err := s.history(ctx, id)
	if err != nil {
		return v, false, err
	}
	for i := len(hist) - 1; i >= 0; i-- {
		if hist[i].Revision == rev {
			return hist[i], true, nil
		}
	}
	return v, false, nil
}

var errBadRequest = errors.New("bad request")

// history returns the final verdicts of id, oldest first.
func (s *Server) history(ctx context.Context, id string) ([]laev1.Verdict, error) {
	entries, err := s.kv.History(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("verdict history %s: %w", id, err)
	}
	var out []laev1.Verdict
	for _, e := range entries {
		var v laev1.Verdict
		if e.Operation() != jetstream.KeyValuePut || json.Unmarshal(e.Value(), &v) != nil || !v.Final {
			continue
		}
		out = append(out, v)
	}
	return out, nil
}

func (s *Server) lookupError(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, errBadRequest) {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	s.log.Warn("verdict lookup", zap.String("video_id", id), zap.Error(err))
	httpError(w, http.StatusInternalServerError, err.Error())
}

func (s *Server) handleVerdict(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, found, err := s.lookup(ctx, r, id)
	if err != nil {
		s.lookupError(w, id, err)
		return
	}
	tracked, isTracked := s.tracker.get(id)
	switch {
	case found:
		body := verdictBody{Verdict: v, State: StateDone, Stage: StageFinished, Name: s.uploadName(id, tracked.Name)}
		if !v.Final {
			body.State, body.Stage = StatePending, tracked.Stage
		}
		writeJSON(w, http.StatusOK, body)
	case isTracked && r.URL.Query().Get("revision") == "":
		writeJSON(w, http.StatusOK, tracked)
	default:
		httpError(w, http.StatusNotFound, "no scan "+id)
	}
}

func (s *Server) handleHistory(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	hist, err := s.history(ctx, id)
	if err != nil {
		s.lookupError(w, id, err)
		return
	}
	if len(hist) == 0 {
		httpError(w, http.StatusNotFound, "no final verdict for "+id)
		return
	}
	writeJSON(w, http.StatusOK, hist)
}

func (s *Server) handleEvidence(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 0 {
		httpError(w, http.StatusBadRequest, "evidence index must be a non-negative integer")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, found, err := s.lookup(ctx, r, id)
	if err != nil {
		s.lookupError(w, id, err)
		return
	}
	if !found || n >= len(v.Evidence) || v.Evidence[n].Image == "" {
		httpError(w, http.StatusNotFound, fmt.Sprintf("no evidence image %d for %s", n, id))
		return
	}
	b, err := s.obj.GetBytes(ctx, v.Evidence[n].Image)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		httpError(w, http.StatusNotFound, "evidence image expired: "+v.Evidence[n].Image)
		return
	}
	if err != nil {
		s.log.Warn("fetch evidence", zap.String("object", v.Evidence[n].Image), zap.Error(err))
		httpError(w, http.StatusInternalServerError, fmt.Sprintf("fetch evidence %s: %v", v.Evidence[n].Image, err))
		return
	}
	ct := http.DetectContentType(b)
	if ct != "image/jpeg" && ct != "image/png" {
		httpError(w, http.StatusInternalServerError, "evidence object is not an image")
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// Object names include the revision: an image never changes under its name.
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
}

func (s *Server) handleReport(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	v, found, err := s.lookup(ctx, r, id)
	if err != nil {
		s.lookupError(w, id, err)
		return
	}
	if !found {
		httpError(w, http.StatusNotFound, "no verdict for "+id+" (yet)")
		return
	}
	images := map[string][]byte{}
	for _, e := range v.Evidence {
		if e.Image == "" {
			continue
		}
		b, err := s.obj.GetBytes(ctx, e.Image)
		if err != nil {
			s.log.Info("report without evidence image", zap.String("object", e.Image), zap.Error(err))
			continue // the report lists it as not available
		}
		images[e.Image] = b
	}
	tracked, _ := s.tracker.get(id)
	c := s.o.Config
	st := report.Settings{SampleFPS: c.Ingest.SampleFPS, SampleFPSSet: true, FaceModel: c.Ingest.FaceModel,
		ModelPath: model.PathOrDefault(c.Detector.Model), Generator: "lae serve"}
	if tracked.SampleFPS != nil {
		st.SampleFPS = *tracked.SampleFPS
	}
	if name := s.uploadName(id, tracked.Name); name != "" {
		st.Input = name + " (uploaded)"
	}
	var buf bytes.Buffer
	if err := report.Write(&buf, v, images, st); err != nil {
		s.log.Error("render report", zap.String("video_id", id), zap.Error(err))
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// The report is self-contained: nothing may load, nothing may run.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("download") != "" {
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="lae-report-%s-r%d.html"`, id, v.Revision))
	}
	_, _ = buf.WriteTo(w)
}

// keepAlive is how often an idle event stream gets a comment, so proxies keep it open.
const keepAlive = 15 * time.Second

func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("last_event_id") // for clients that cannot set headers
	}
	c, replay, reset := s.hub.subscribeFrom(last)
	defer s.hub.unsubscribe(c)
	if _, err := io.WriteString(w, "retry: 2000\n: lae events\n\n"); err != nil {
		return
	}
	if reset {
		// The events missed are gone: the client reloads what it shows. (The client's id is not
		// echoed: it is outside input, and a newline in it would forge events.)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: {\"reason\":\"missed events are no longer available: reload the scan list\"}\n\n", eventReset); err != nil {
			return
		}
	}
	for _, e := range replay {
		if err := writeEvent(w, e); err != nil {
			return
		}
	}
	if err := rc.Flush(); err != nil {
		return
	}
	t := time.NewTicker(keepAlive)
	defer t.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-s.done:
			return
		case <-t.C:
			_, err = io.WriteString(w, ": ping\n\n")
		case e, ok := <-c:
			if !ok {
				return // too slow: the client reconnects with its Last-Event-ID
			}
			err = writeEvent(w, e)
		}
		if err == nil {
			err = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

func writeEvent(w io.Writer, e event) error {
	_, err := fmt.Fprintf(w, "id: %s\nevent: %s\ndata: %s\n\n", e.ID, e.Name, e.Data)
	return err
}
