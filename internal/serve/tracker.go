package serve

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Scan states.
const (
	StatePending = "pending" // submitted, not yet finally scored
	StateDone    = "done"    // a final verdict exists
)

// Scan stages, finer than the state, for progress displays.
const (
	StageQueued   = "queued"    // waiting for an ingest worker
	StageIngest   = "ingesting" // crops are being published
	StageScoring  = "scoring"   // ingest finished, scores still arriving
	StageFinished = "finished"  // a final verdict exists
	// StageStalled is a scan with a rolling verdict in the store that this process has seen
	// no progress of (one cut off by a restart): it is not said to be ingesting.
	StageStalled = "stalled"
)

// Scan is the summary of one scan, as listed by GET /api/scans and sent as "scan" events.
type Scan struct {
	VideoID string `json:"video_id"`
	Input   string `json:"input"`
	// Name is an uploaded file's original name.
	Name        string    `json:"name,omitempty"`
	Reference   string    `json:"reference,omitempty"`
	State       string    `json:"state"`
	Stage       string    `json:"stage"`
	SubmittedAt time.Time `json:"submitted_at,omitempty"`
	// SampleFPS is the submission's sampling rate (nil = the server default).
	SampleFPS      *float64 `json:"sample_fps,omitempty"`
	CropsPublished uint64   `json:"crops_published"`
	CropsScored    uint64   `json:"crops_scored"`
	// IngestDone says ingest ended; CropsPublished is then the final count.
	IngestDone bool `json:"ingest_done"`
	// MediaSeconds is the media time read so far: while ingest runs, the time of the latest
	// sampled frame (from ingest's progress messages); from the end-of-stream on, the media
	// time ingest read. Progress is this over DurationSeconds.
	MediaSeconds float64 `json:"media_seconds"`
	// DurationSeconds is the media time ingest means to read (the declared duration, capped by
	// the submission's max_duration); 0 while unknown: before ingest's first progress message,
	// for sources that declare none, and for live streams.
	DurationSeconds float64 `json:"duration_seconds,omitempty"`
	// maxDuration is the submission's max_duration_s (0 = none): ingest stops there, so
	// progress measures against it when the source is longer.
	maxDuration float64
	// Live marks a live stream (its scheme, or ingest's word at the end-of-stream): there is
	// no duration, only the elapsed media time.
	Live bool `json:"live,omitempty"`
	// Partial marks a final verdict that speaks for ReadShare of the video only (a truncated
	// file, a dropped download): laev1.Verdict's complete false.
	Partial bool `json:"partial,omitempty"`
	// ReadShare is the final verdict's share of the expected media time read, when known.
	ReadShare *float64 `json:"read_share,omitempty"`
	// Verdict, Score and Revision are the latest (rolling or final) verdict's.
	Verdict   string    `json:"verdict,omitempty"`
	Score     float64   `json:"score"`
	Threshold float64   `json:"threshold,omitempty"`
	Revision  int       `json:"revision"`
	Error     string    `json:"error,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
}

// tracker follows the scans this process saw submitted until their final verdict; finished
// scans are forgotten after keepDone (their verdicts stay in the KV bucket).
type tracker struct {
	mu    sync.Mutex
	scans map[string]*Scan
	dirty map[string]bool
	hub   *hub
	now   func() time.Time
}

// keepDone is how long a finished scan stays tracked; keepStale drops a scan that has seen
// nothing for a day (a late message of a forgotten video, a live stream that went silent),
// so the tracker's memory stays bounded.
const (
	keepDone  = time.Hour
	keepStale = 24 * time.Hour
)

func newTracker(h *hub) *tracker {
	return &tracker{scans: map[string]*Scan{}, dirty: map[string]bool{}, hub: h, now: time.Now}
}

// get returns a copy of a tracked scan.
func (t *tracker) get(id string) (Scan, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sc, ok := t.scans[id]
	if !ok {
		return Scan{}, false
	}
	return *sc, true
}

// list returns copies of every tracked scan.
func (t *tracker) list() []Scan {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Scan, 0, len(t.scans))
	for _, sc := range t.scans {
		out = append(out, *sc)
	}
	return out
}

// entry returns the scan of id, creating a pending one; t.mu must be held.
func (t *tracker) entry(id string) *Scan {
	sc, ok := t.scans[id]
	if !ok {
		sc = &Scan{VideoID: id, State: StatePending, Stage: StageQueued, SubmittedAt: t.now().UTC()}
		t.scans[id] = sc
	}
	sc.UpdatedAt = t.now().UTC()
	return sc
}

// submitted records a submission (from the HTTP API or seen on the work queue subject).
func (t *tracker) submitted(req laev1.SubmitRequest, name string) {
	t.mu.Lock()
	sc := t.entry(req.VideoID)
	if sc.Input == "" {
		sc.Input = req.URL
	}
	if name != "" {
		sc.Name = name
	}
	if req.Reference != "" {
		sc.Reference = req.Reference
	}
	if req.SampleFPS != nil {
		f := *req.SampleFPS
		sc.SampleFPS = &f
	}
	if req.MaxDurationSeconds > 0 {
		sc.maxDuration = req.MaxDurationSeconds
	}
	if liveURL(sc.Input) {
		sc.Live = true
	}
	snap := *sc
	t.mu.Unlock()
	t.hub.publish("scan", snap)
}

// liveSchemes are the schemes of sources that are live by nature (as ingest/source has them):
// known live from the submission on, before ingest says so at the end-of-stream.
var liveSchemes = map[string]bool{"rtsp": true, "rtsps": true, "rtmp": true, "rtmps": true, "srt": true, "udp": true, "tcp": true}

// liveURL reports whether a submitted URL is a live stream by its scheme.
func liveURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && liveSchemes[strings.ToLower(p.Scheme)]
}

// progress records ingest's progress message; progress events are sent in batches by flush.
func (t *tracker) progress(p laev1.IngestProgress) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sc := t.entry(p.VideoID)
	if sc.State == StateDone || sc.IngestDone {
		return // the end-of-stream's counts are final; a late progress message is older
	}
	sc.Stage = StageIngest
	sc.CropsPublished = max(sc.CropsPublished, p.CropsPublished)
	if finite(p.MediaSeconds) {
		sc.MediaSeconds = max(sc.MediaSeconds, p.MediaSeconds)
	}
	if d := p.DurationSeconds; finite(d) && d > 0 && !sc.Live {
		if sc.maxDuration > 0 {
			d = min(d, sc.maxDuration)
		}
		sc.DurationSeconds = d
	}
	t.dirty[p.VideoID] = true
}

// finite reports whether f is a usable number of seconds.
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) && f >= 0 }

// scored counts a score.
func (t *tracker) scored(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sc := t.entry(id)
	if sc.State == StateDone {
		return
	}
	sc.CropsScored++
	// A scored crop was published, though the progress message that counts it may come later.
	sc.CropsPublished = max(sc.CropsPublished, sc.CropsScored)
	t.dirty[id] = true
}

// ingestDone records an end-of-stream.
func (t *tracker) ingestDone(eos *laev1.EndOfStream) {
	t.mu.Lock()
	sc := t.entry(eos.GetVideoId())
	if sc.State == StateDone {
		t.mu.Unlock()
		return
	}
	sc.IngestDone = true
	sc.CropsPublished = eos.GetCropsPublished()
	if r := eos.GetReadSeconds(); finite(r) && r > 0 {
		sc.MediaSeconds = r
	}
	if d := eos.GetExpectedSeconds(); finite(d) && d > 0 {
		sc.DurationSeconds = d
	}
	sc.Live = sc.Live || eos.GetLive()
	if sc.Input == "" {
		sc.Input = eos.GetSourceUrl()
	}
	sc.Stage = StageScoring
	delete(t.dirty, sc.VideoID)
	snap := *sc
	t.mu.Unlock()
	t.hub.publish("scan", snap)
}

// verdict records a verdict (rolling or final) and forwards it.
func (t *tracker) verdict(v laev1.Verdict) {
	t.mu.Lock()
	sc := t.entry(v.VideoID)
	if sc.Input == "" {
		sc.Input = v.Input
	}
	applyVerdict(sc, v)
	delete(t.dirty, sc.VideoID)
	snap := *sc
	t.mu.Unlock()
	t.hub.publish("verdict", v)
	t.hub.publish("scan", snap)
}

// applyVerdict puts a verdict's summary into its scan: the rolling or final result, and for
// a final one the end of every in-progress state.
func applyVerdict(sc *Scan, v laev1.Verdict) {
	sc.Verdict, sc.Score, sc.Threshold, sc.Revision, sc.Error = v.Verdict, v.Score, v.Threshold, v.Revision, v.Error
	if v.CropsScored > sc.CropsScored {
		sc.CropsScored = v.CropsScored
	}
	if !v.Final {
		return
	}
	sc.State, sc.Stage, sc.IngestDone = StateDone, StageFinished, true
	sc.Partial = !v.Complete && v.ReadShare != nil
	sc.ReadShare = nil
	if v.ReadShare != nil {
		r := *v.ReadShare
		sc.ReadShare = &r
	}
	if sc.DurationSeconds == 0 && v.Source != nil && v.Source.DurationSeconds > 0 {
		sc.DurationSeconds = v.Source.DurationSeconds
	}
	if sc.MediaSeconds == 0 && sc.DurationSeconds > 0 && v.ReadShare != nil {
		sc.MediaSeconds = *v.ReadShare * sc.DurationSeconds
	}
}

// flush sends the scans whose counts changed since the last flush, and forgets old finished
// scans. Called periodically, so that a video of thousands of crops sends a few events a
// second, not one per crop.
func (t *tracker) flush() {
	t.mu.Lock()
	snaps := make([]Scan, 0, len(t.dirty))
	for id := range t.dirty {
		if sc, ok := t.scans[id]; ok {
			snaps = append(snaps, *sc)
		}
	}
	clear(t.dirty)
	doneCutoff, staleCutoff := t.now().Add(-keepDone), t.now().Add(-keepStale)
	for id, sc := range t.scans {
		if (sc.State == StateDone && sc.UpdatedAt.Before(doneCutoff)) || sc.UpdatedAt.Before(staleCutoff) {
			delete(t.scans, id)
		}
	}
	t.mu.Unlock()
	for _, s := range snaps {
		t.hub.publish("scan", s)
	}
}

// startWatch follows the pipeline: submissions on the work queue subject, ingest progress,
// scores and end-of-stream events, and the verdicts KV bucket (rolling and final verdicts).
// Core subscriptions see what JetStream stores without consuming it.
func (s *Server) startWatch(ctx context.Context) error {
	nc := s.stack.NC
	tr := s.tracker
	var subs []*nats.Subscription
	sub := func(subject string, h nats.MsgHandler) error {
		sb, err := nc.Subscribe(subject, h)
		if err != nil {
			return fmt.Errorf("serve: subscribe %s: %w", subject, err)
		}
		// Progress is best-effort: a slow consumer drops counts rather than memory.
		_ = sb.SetPendingLimits(65536, 256<<20)
		subs = append(subs, sb)
		return nil
	}
	if err := sub(laev1.SubjectIngestWork, func(m *nats.Msg) {
		var req laev1.SubmitRequest
		if json.Unmarshal(m.Data, &req) == nil && laev1.ValidateVideoID(req.VideoID) == nil {
			tr.submitted(req, "")
		}
	}); err != nil {
		return err
	}
	if err := sub(laev1.SubjectProgressPrefix+"*", func(m *nats.Msg) {
		var p laev1.IngestProgress
		if json.Unmarshal(m.Data, &p) == nil && p.VideoID == strings.TrimPrefix(m.Subject, laev1.SubjectProgressPrefix) &&
			laev1.ValidateVideoID(p.VideoID) == nil {
			tr.progress(p)
		}
	}); err != nil {
		return err
	}
	if err := sub(laev1.SubjectScoresPrefix+"*", func(m *nats.Msg) {
		tr.scored(strings.TrimPrefix(m.Subject, laev1.SubjectScoresPrefix))
	}); err != nil {
		return err
	}
	if err := sub(laev1.SubjectEOSPrefix+"*", func(m *nats.Msg) {
		var eos laev1.EndOfStream
		if proto.Unmarshal(m.Data, &eos) == nil && eos.GetRevision() == 0 && eos.GetVideoId() != "" {
			tr.ingestDone(&eos)
		}
	}); err != nil {
		return err
	}
	w, err := s.kv.WatchAll(ctx, jetstream.UpdatesOnly())
	if err != nil {
		return fmt.Errorf("serve: watch %s: %w", laev1.BucketVerdicts, err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	s.cancelWatch = cancel
	s.watchWG.Add(1)
	go func() {
		defer s.watchWG.Done()
		defer func() {
			_ = w.Stop()
			for _, sb := range subs {
				_ = sb.Unsubscribe()
			}
		}()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		sweep := time.NewTicker(sweepEvery)
		defer sweep.Stop()
		s.sweepUploads(wctx, time.Now())
		s.watchWG.Add(1)
		go func() {
			defer s.watchWG.Done()
			s.learnDigests(wctx)
		}()
		for {
			select {
			case <-wctx.Done():
				return
			case <-tick.C:
				tr.flush()
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil || e.Operation() != jetstream.KeyValuePut {
					continue
				}
				var v laev1.Verdict
				if err := json.Unmarshal(e.Value(), &v); err != nil {
					s.log.Warn("undecodable verdict in KV", zap.String("key", e.Key()), zap.Error(err))
					continue
				}
				tr.verdict(v)
				if v.Final && v.Revision == 0 && !s.o.Config.ServeRoles().Aggregate {
					// The time to verdict this API started at acceptance ends here when another
					// process aggregates (an API-only server); an aggregator in this process
					// ends it itself.
					s.stack.Metrics.VerdictFinal(v.VideoID, time.Now())
				}
				if v.Final {
					s.uploadFinished(v.VideoID)
					if v.Source != nil {
						s.dedupe.learn(v.Source.SHA256, v.VideoID)
					}
					s.notify(v, e.Value())
				}
			case now := <-sweep.C:
				s.sweepUploads(wctx, now)
			}
		}
	}()
	return nil
}

// sortScans orders scans newest first (by submission or verdict time), then by id.
func sortScans(scans []Scan) {
	sort.Slice(scans, func(i, j int) bool {
		ki, kj := sortKey(scans[i]), sortKey(scans[j])
		if !ki.Equal(kj) {
			return ki.After(kj)
		}
		return scans[i].VideoID > scans[j].VideoID
	})
}

// forget drops a deleted scan.
func (t *tracker) forget(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.scans, id)
	delete(t.dirty, id)
}
