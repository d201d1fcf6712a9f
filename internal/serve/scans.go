package serve

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// List limits of GET /api/scans.
const (
	defaultListLimit = 200
	maxListLimit     = 1000
)

// scanPage is the answer of GET /api/scans: one page, newest first, and the way to the next.
type scanPage struct {
	Scans []Scan `json:"scans"`
	// NextCursor continues the list after the last scan of this page ("" on the last page);
	// Next is the URL of that page, with the same filters.
	NextCursor string `json:"next_cursor,omitempty"`
	Next       string `json:"next,omitempty"`
}

// listFilter is GET /api/scans's query.
type listFilter struct {
	limit   int
	after   *cursor
	state   string
	verdict string
	words   []string
}

func parseListFilter(q url.Values) (listFilter, error) {
	f := listFilter{limit: defaultListLimit}
	if a := q.Get("limit"); a != "" {
		n, err := strconv.Atoi(a)
		if err != nil || n <= 0 || n > maxListLimit {
			return f, fmt.Errorf("limit must be an integer from 1 to %d", maxListLimit)
		}
		f.limit = n
	}
	if a := q.Get("cursor"); a != "" {
		c, err := decodeCursor(a)
		if err != nil {
			return f, err
		}
		f.after = &c
	}
	switch f.state = q.Get("state"); f.state {
	case "", StatePending, StateDone:
	default:
		return f, fmt.Errorf("state must be %s or %s", StatePending, StateDone)
	}
	switch f.verdict = q.Get("verdict"); f.verdict {
	case "", laev1.VerdictFake, laev1.VerdictReal, laev1.VerdictUnknown, laev1.VerdictError:
	default:
		return f, errors.New("verdict must be fake, real, unknown or error")
	}
	if len(q.Get("q")) > 256 {
		return f, errors.New("q is longer than 256 bytes")
	}
	f.words = strings.Fields(strings.ToLower(q.Get("q")))
	return f, nil
}

// match reports whether sc passes the filters: every word of q in its name, input, reference
// or id (case-insensitive), and the state and verdict asked for.
func (f listFilter) match(sc Scan) bool {
	if f.state != "" && sc.State != f.state || f.verdict != "" && sc.Verdict != f.verdict {
		return false
	}
	hay := strings.ToLower(sc.Name + "\n" + sc.Input + "\n" + sc.Reference + "\n" + sc.VideoID)
	for _, w := range f.words {
		if !strings.Contains(hay, w) {
			return false
		}
	}
	return true
}

// cursor is a position in the newest-first order of scans: after the scan with this sort
// time and id. Positions rather than offsets, so that scans arriving while a client pages do
// not shift the pages under it.
type cursor struct {
	At time.Time
	ID string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.At.UTC().Format(time.RFC3339Nano) + "|" + c.ID))
}

// decodeCursor reads a cursor a client sent back (outside input).
func decodeCursor(s string) (cursor, error) {
	bad := errors.New("cursor is not one this server gave")
	if len(s) > 200 {
		return cursor{}, bad
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, bad
	}
	ts, id, ok := strings.Cut(string(b), "|")
	if !ok || laev1.ValidateVideoID(id) != nil {
		return cursor{}, bad
	}
	at, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return cursor{}, bad
	}
	return cursor{At: at, ID: id}, nil
}

// sortKey is the time a scan is ordered by.
func sortKey(s Scan) time.Time {
	if !s.SubmittedAt.IsZero() {
		return s.SubmittedAt
	}
	return s.UpdatedAt
}

// before reports whether sc comes after c in the newest-first order.
func (c cursor) before(sc Scan) bool {
	k := sortKey(sc)
	if !k.Equal(c.At) {
		return k.Before(c.At)
	}
	return sc.VideoID < c.ID
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	f, err := parseListFilter(r.URL.Query())
	if err != nil {
		httpError(w, http.StatusBadRequest, err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	all, err := s.allScans(ctx)
	if err != nil {
		s.log.Warn("list verdicts", zap.Error(err))
		httpError(w, http.StatusInternalServerError, err.Error())
		return
	}
	sortScans(all)
	page := scanPage{Scans: []Scan{}}
	for _, sc := range all {
		if f.after != nil && !f.after.before(sc) || !f.match(sc) {
			continue
		}
		if len(page.Scans) == f.limit {
			last := page.Scans[len(page.Scans)-1]
			page.NextCursor = cursor{At: sortKey(last), ID: last.VideoID}.encode()
			q := r.URL.Query()
			q.Set("cursor", page.NextCursor)
			q.Set("limit", strconv.Itoa(f.limit))
			page.Next = "/api/scans?" + q.Encode()
			w.Header().Set("Link", "<"+page.Next+`>; rel="next"`)
			break
		}
		page.Scans = append(page.Scans, sc)
	}
	writeJSON(w, http.StatusOK, page)
}

// allScans is every scan: the tracked ones and those with a verdict in the KV bucket.
func (s *Server) allScans(ctx context.Context) ([]Scan, error) {
	byID := map[string]Scan{}
	for _, sc := range s.tracker.list() {
		byID[sc.VideoID] = sc
	}
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list verdicts: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	for key := range lister.Keys() {
		if tr, ok := byID[key]; ok && tr.State == StateDone {
			continue // the tracker already has the final verdict's summary
		}
		e, err := s.kv.Get(ctx, key)
		if err != nil {
			continue // deleted meanwhile
		}
		var v laev1.Verdict
		if json.Unmarshal(e.Value(), &v) != nil {
			continue
		}
		sc := byID[key]
		sc.VideoID = key
		sc.Name = s.uploadName(key, sc.Name)
		applyVerdict(&sc, v)
		if sc.Input == "" {
			sc.Input = v.Input
		}
		sc.UpdatedAt = v.CreatedAt
		if !v.Final && sc.State == "" {
			sc.State, sc.Stage = StatePending, StageStalled
		}
		byID[key] = sc
	}
	out := make([]Scan, 0, len(byID))
	for _, sc := range byID {
		out = append(out, sc)
	}
	return out, nil
}

// handleDelete removes a scan: its verdicts (every revision), evidence images, upload,
// webhook log and tracker entry. A scan still running is refused with 409 rather than
// cancelled: the pipeline has no cancel, and its stages would write the verdict back.
func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	tracked, isTracked := s.tracker.get(id)
	if isTracked && tracked.State == StatePending && tracked.Stage != StageStalled {
		httpError(w, http.StatusConflict, "scan "+id+" is in progress: delete it once its final verdict is in")
		return
	}
	entries, err := s.kv.History(ctx, id)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.lookupError(w, id, err)
		return
	}
	live := false
	images := map[string]bool{}
	for _, e := range entries {
		if e.Operation() != jetstream.KeyValuePut {
			live = false // purged or deleted before: only later puts count
			continue
		}
		live = true
		var v laev1.Verdict
		if json.Unmarshal(e.Value(), &v) != nil {
			continue
		}
		for _, ev := range v.Evidence {
			if ev.Image != "" {
				images[ev.Image] = true
			}
		}
	}
	if !live && !isTracked {
		httpError(w, http.StatusNotFound, "no scan "+id)
		return
	}
	for name := range images {
		if err := s.obj.Delete(ctx, name); err != nil && !errors.Is(err, jetstream.ErrObjectNotFound) {
			s.log.Warn("delete evidence", zap.String("object", name), zap.Error(err))
			httpError(w, http.StatusInternalServerError, fmt.Sprintf("delete evidence %s: %v", name, err))
			return
		}
	}
	if live {
		if err := s.kv.Purge(ctx, id); err != nil {
			s.log.Warn("purge verdicts", zap.String("video_id", id), zap.Error(err))
			httpError(w, http.StatusInternalServerError, fmt.Sprintf("delete verdicts of %s: %v", id, err))
			return
		}
	}
	s.removeUpload(id)
	s.dropName(id)
	s.tracker.forget(id)
	s.dedupe.forget(id)
	s.setHook(id, "")
	if s.webhooks != nil {
		s.webhooks.Forget(id)
	}
	s.hub.publish("deleted", map[string]string{"video_id": id})
	s.log.Info("scan deleted", zap.String("video_id", id), zap.Int("evidence_images", len(images)))
	w.WriteHeader(http.StatusNoContent)
}

// dedupe maps the SHA-256 of uploaded files to the scan of them, so that the same upload
// twice returns the earlier scan. It learns from uploads accepted here and from the final
// verdicts' source.sha256 (those in the bucket at start included), so it survives restarts
// as far as the verdicts do.
type dedupe struct {
	mu    sync.Mutex
	bySum map[string]string
	bySID map[string]string
}

func newDedupe() *dedupe { return &dedupe{bySum: map[string]string{}, bySID: map[string]string{}} }

// learn records that videoID scanned the bytes with digest sum.
func (d *dedupe) learn(sum, videoID string) {
	if sum == "" {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.bySum[sum]; !ok {
		d.bySum[sum] = videoID
		d.bySID[videoID] = sum
	}
}

// claim returns the earlier scan of sum and its state when there is one that still exists,
// did not fail (an "error" verdict says nothing of the video: uploading it again is how a
// user retries) and no rescore is asked; otherwise it records videoID as the scan of sum (the
// newest scan is what later duplicates get).
func (d *dedupe) claim(ctx context.Context, s *Server, sum, videoID string, rescore bool) (earlier, state string, dup bool) {
	d.mu.Lock()
	prev, ok := d.bySum[sum]
	d.mu.Unlock()
	if ok && !rescore {
		if st, exists := s.scanState(ctx, prev); exists && !s.failed(ctx, prev) {
			return prev, st, true
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if old, ok := d.bySum[sum]; ok {
		delete(d.bySID, old)
	}
	d.bySum[sum], d.bySID[videoID] = videoID, sum
	return "", "", false
}

// forget drops a deleted scan.
func (d *dedupe) forget(videoID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if sum, ok := d.bySID[videoID]; ok {
		delete(d.bySID, videoID)
		if d.bySum[sum] == videoID {
			delete(d.bySum, sum)
		}
	}
}

// scanState is a scan's state when it exists (tracked, or with a verdict in the bucket).
func (s *Server) scanState(ctx context.Context, id string) (string, bool) {
	if sc, ok := s.tracker.get(id); ok {
		return sc.State, true
	}
	e, err := s.kv.Get(ctx, id)
	if err != nil {
		return "", false
	}
	var v laev1.Verdict
	if json.Unmarshal(e.Value(), &v) != nil || !v.Final {
		return StatePending, true
	}
	return StateDone, true
}

// failed reports whether a scan's final verdict is an error.
func (s *Server) failed(ctx context.Context, id string) bool {
	if sc, ok := s.tracker.get(id); ok && sc.State == StateDone {
		return sc.Verdict == laev1.VerdictError
	}
	e, err := s.kv.Get(ctx, id)
	if err != nil {
		return false
	}
	var v laev1.Verdict
	return json.Unmarshal(e.Value(), &v) == nil && v.Final && v.Verdict == laev1.VerdictError
}

// learnDigests fills the de-duplication index from the final verdicts in the bucket, in the
// background at start (a scan of the whole bucket must not delay serving).
func (s *Server) learnDigests(ctx context.Context) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		s.log.Warn("dedupe index: list verdicts", zap.Error(err))
		return
	}
	defer func() { _ = lister.Stop() }()
	for key := range lister.Keys() {
		e, err := s.kv.Get(ctx, key)
		if err != nil {
			continue
		}
		var v laev1.Verdict
		if json.Unmarshal(e.Value(), &v) == nil && v.Final && v.Source != nil {
			s.dedupe.learn(v.Source.SHA256, v.VideoID)
		}
	}
}
