// Package rescore replays archived face crops through the current model without decoding the
// videos again: for each chosen video it scores the crops kept in the LAE_FACES stream with a
// new revision number, closes the revision with an end-of-stream event, and waits for the
// aggregator's verdict of that revision. Earlier revisions stay in the verdicts KV history.
package rescore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/lae-screening/lae/detector/worker"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Selection chooses the videos to rescore: explicit ids, or every archived video whose latest
// verdict was made within [Since, Until) (zero bounds are open).
type Selection struct {
	VideoIDs     []string
	Since, Until time.Time
}

// Options configures Run.
type Options struct {
	Selection Selection
	// VerdictTimeout bounds the wait for each new verdict (default 2 min).
	VerdictTimeout time.Duration
	// Progress is called after each video.
	Progress func(done, total int, r Result)
	Logger   *zap.Logger
	Worker   worker.Options
}

// Detect runs the detector stage over one consumer until ctx ends (worker.Run with the
// current model, bound by the caller: internal/core wires the stages, this package only
// drives them video by video).
type Detect func(ctx context.Context, o worker.Options) error

// Result is the outcome for one video.
type Result struct {
	VideoID  string
	Crops    uint64
	Old, New *laev1.Verdict
	// Changed is true when the verdict label changed.
	Changed bool
	Err     error
}

// ErrCropsExpired means the archive no longer holds the video's crops (retention); the video
// must be ingested again from its URL.
var ErrCropsExpired = errors.New("archived crops expired")

// Select lists the video ids a selection names, in order.
func Select(ctx context.Context, js jetstream.JetStream, sel Selection) ([]string, error) {
	if len(sel.VideoIDs) > 0 {
		for _, id := range sel.VideoIDs {
			if err := laev1.ValidateVideoID(id); err != nil {
				return nil, err
			}
		}
		return sel.VideoIDs, nil
	}
	st, err := js.Stream(ctx, laev1.StreamScores)
	if err != nil {
		return nil, fmt.Errorf("scores stream: %w", err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(laev1.SubjectEOSPrefix+">"))
	if err != nil {
		return nil, fmt.Errorf("list videos: %w", err)
	}
	kv, err := js.KeyValue(ctx, laev1.BucketVerdicts)
	if err != nil {
		return nil, fmt.Errorf("verdicts bucket: %w", err)
	}
	var ids []string
	for subj := range info.State.Subjects {
		id := strings.TrimPrefix(subj, laev1.SubjectEOSPrefix)
		if !sel.Since.IsZero() || !sel.Until.IsZero() {
			v, err := latest(ctx, kv, id)
			if err != nil || v == nil {
				continue
			}
			if (!sel.Since.IsZero() && v.CreatedAt.Before(sel.Since)) || (!sel.Until.IsZero() && !v.CreatedAt.Before(sel.Until)) {
				continue
			}
		}
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids, nil
}

func latest(ctx context.Context, kv jetstream.KeyValue, id string) (*laev1.Verdict, error) {
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get verdict %s: %w", id, err)
	}
	var v laev1.Verdict
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return nil, fmt.Errorf("decode verdict %s: %w", id, err)
	}
	return &v, nil
}

// Run rescores the selected videos one after another with m.
func Run(ctx context.Context, js jetstream.JetStream, detect Detect, o Options) ([]Result, error) {
	if o.VerdictTimeout == 0 {
		o.VerdictTimeout = 2 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	ids, err := Select(ctx, js, o.Selection)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, laev1.BucketVerdicts)
	if err != nil {
		return nil, fmt.Errorf("verdicts bucket: %w", err)
	}
	results := make([]Result, 0, len(ids))
	for i, id := range ids {
		r := one(ctx, js, kv, detect, id, o)
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
		results = append(results, r)
		if o.Progress != nil {
			o.Progress(i+1, len(ids), r)
		}
	}
	return results, nil
}

func one(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValue, detect Detect, id string, o Options) Result {
	res := Result{VideoID: id}
	old, err := latest(ctx, kv, id)
	if err != nil {
		res.Err = err
		return res
	}
	res.Old = old
	scores, err := js.Stream(ctx, laev1.StreamScores)
	if err != nil {
		res.Err = fmt.Errorf("scores stream: %w", err)
		return res
	}
	raw, err := scores.GetLastMsgForSubject(ctx, laev1.EOSSubject(id))
	if err != nil {
		res.Err = fmt.Errorf("video %s: no end-of-stream event in the archive: %w", id, err)
		return res
	}
	var eos laev1.EndOfStream
	if err := proto.Unmarshal(raw.Data, &eos); err != nil {
		res.Err = fmt.Errorf("video %s: decode end-of-stream: %w", id, err)
		return res
	}
	rev := eos.Revision + 1
	if old != nil && uint32(old.Revision) >= rev {
		rev = uint32(old.Revision) + 1
	}

	// An ephemeral consumer over this video's archived crops; the detector worker scores them
	// with the new revision, so the scores do not collide with earlier ones.
	cons, err := js.CreateConsumer(ctx, laev1.StreamFaces, jetstream.ConsumerConfig{
		FilterSubject: laev1.FacesSubject(id), DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxDeliver: 5,
		InactiveThreshold: 5 * time.Minute, Description: "rescore " + id,
	})
	if err != nil {
		res.Err = fmt.Errorf("video %s: archive consumer: %w", id, err)
		return res
	}
	defer func() { _ = js.DeleteConsumer(context.WithoutCancel(ctx), laev1.StreamFaces, cons.CachedInfo().Name) }()
	info, err := cons.Info(ctx)
	if err != nil {
		res.Err = fmt.Errorf("video %s: archive consumer: %w", id, err)
		return res
	}
	res.Crops = info.NumPending
	if res.Crops < eos.CropsPublished {
		res.Err = fmt.Errorf("video %s: %w (%d of %d crops left); ingest it again from %s", id, ErrCropsExpired, res.Crops, eos.CropsPublished, eos.SourceUrl)
		return res
	}

	watcher, err := kv.Watch(ctx, id, jetstream.UpdatesOnly())
	if err != nil {
		res.Err = fmt.Errorf("video %s: watch verdict: %w", id, err)
		return res
	}
	defer func() { _ = watcher.Stop() }()

	wo := o.Worker
	wo.Revision, wo.Consumer, wo.Logger = rev, cons, o.Logger.Named("rescore")
	wctx, stop := context.WithCancel(ctx)
	finished := make(chan struct{})
	var werr error
	go func() {
		defer close(finished)
		werr = detect(wctx, wo)
	}()
	err = waitConsumed(ctx, cons, finished)
	stop()
	<-finished
	if err == nil && werr != nil {
		err = werr
	}
	if err != nil {
		res.Err = fmt.Errorf("video %s: score archived crops: %w", id, err)
		return res
	}

	closing := proto.Clone(&eos).(*laev1.EndOfStream)
	closing.Revision = rev
	closing.CropsPublished = res.Crops
	data, err := proto.Marshal(closing)
	if err != nil {
		res.Err = fmt.Errorf("video %s: encode end-of-stream: %w", id, err)
		return res
	}
	if _, err := js.Publish(ctx, laev1.EOSSubject(id), data, jetstream.WithMsgID(laev1.EOSMsgID(id, rev))); err != nil {
		res.Err = fmt.Errorf("video %s: publish end-of-stream: %w", id, err)
		return res
	}

	timer := time.NewTimer(o.VerdictTimeout)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			res.Err = ctx.Err()
			return res
		case <-timer.C:
			res.Err = fmt.Errorf("video %s: no verdict for revision %d within %s", id, rev, o.VerdictTimeout)
			return res
		case e := <-watcher.Updates():
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var v laev1.Verdict
			if err := json.Unmarshal(e.Value(), &v); err != nil || uint32(v.Revision) != rev || !v.Final {
				continue
			}
			res.New = &v
			res.Changed = old == nil || old.Verdict != v.Verdict
			return res
		}
	}
}

// waitConsumed returns once every message of the consumer was delivered and acknowledged.
func waitConsumed(ctx context.Context, cons jetstream.Consumer, workerDone <-chan struct{}) error {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		info, err := cons.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-workerDone:
			return errors.New("worker stopped before the archive was scored")
		case <-t.C:
		}
	}
}
