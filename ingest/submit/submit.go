// Package submit answers submissions on lae.submit: it validates the request, holds its URL to
// the source policy when one is set (ingest/source.Policy: no internal addresses for submitted
// URLs), assigns a video id and queues the job on the LAE_INGEST work queue, from which exactly
// one ingest worker takes it. Every ingest process runs a responder in one queue group, so a submission is
// answered once however many ingest processes run.
package submit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/ingest/source"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// QueueGroup is the queue group of the submit responders.
const QueueGroup = "lae-submit"

// Limits on a request's fields: a submission is a few hundred bytes; anything far larger is
// a mistake or an attempt to make the server store and echo it.
const (
	MaxURLBytes       = 4096
	MaxReferenceBytes = 256
	MaxPriority       = 1000
)

// ErrVideoIDTaken refuses a caller-chosen video id that is already in use: queued, being
// ingested, or with a verdict. Reusing it would mix two videos' crops under one id and replace
// the first one's verdict.
var ErrVideoIDTaken = errors.New("video id already in use")

// Validate checks a request and fills in the video id; it returns a user-facing error.
func Validate(req *laev1.SubmitRequest) error {
	if req.URL == "" {
		return errors.New("url is required")
	}
	if len(req.URL) > MaxURLBytes {
		return fmt.Errorf("url of %d bytes: at most %d", len(req.URL), MaxURLBytes)
	}
	if len(req.Reference) > MaxReferenceBytes {
		return fmt.Errorf("reference of %d bytes: at most %d", len(req.Reference), MaxReferenceBytes)
	}
	if req.Priority < -MaxPriority || req.Priority > MaxPriority {
		return fmt.Errorf("priority %d out of range [%d, %d]", req.Priority, -MaxPriority, MaxPriority)
	}
	// An upload (laev1.UploadURL) is an object of the uploads bucket, not something to connect
	// to: ingest reads it from a local copy.
	if _, upload := laev1.UploadObject(req.URL); !upload {
		if err := source.ValidateURL(req.URL); err != nil {
			return err
		}
	}
	if req.SampleFPS != nil && (*req.SampleFPS < 0 || math.IsNaN(*req.SampleFPS) || *req.SampleFPS > 1000) {
		return fmt.Errorf("sample_fps %v out of range [0, 1000]", *req.SampleFPS)
	}
	if req.MaxDurationSeconds < 0 || math.IsNaN(req.MaxDurationSeconds) {
		return fmt.Errorf("max_duration_s %v must be >= 0", req.MaxDurationSeconds)
	}
	if req.VideoID == "" {
		req.VideoID = laev1.NewVideoID()
	}
	return laev1.ValidateVideoID(req.VideoID)
}

// Options configures the responder.
type Options struct {
	// Policy, when set, is the source policy a submitted URL must pass before it is queued:
	// fast feedback to the submitter. Ingest holds the URL to the same policy again when it
	// opens it (a work item can reach the queue without this responder). nil = no policy
	// (`lae scan`, whose user owns the machine).
	Policy *source.Policy
}

// policyTimeout bounds the host lookup of a submission's check.
const policyTimeout = 10 * time.Second

// Admit decides whether a submission may be queued: Validate; a video id chosen by the caller
// must be unused in js (CheckUnused: ErrVideoIDTaken); the URL must pass the source policy p
// (nil = none): a refused scheme is named, a refused or unresolvable host gives
// source.ErrUnavailable, which does not say which. Nothing is connected.
func Admit(ctx context.Context, js jetstream.JetStream, req *laev1.SubmitRequest, p *source.Policy) error {
	chosen := req.VideoID != ""
	if err := Validate(req); err != nil {
		return err
	}
	if chosen {
		if err := CheckUnused(ctx, js, req.VideoID); err != nil {
			return err
		}
	}
	if _, upload := laev1.UploadObject(req.URL); p == nil || upload {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, policyTimeout)
	defer cancel()
	return p.Check(ctx, req.URL)
}

// Enqueue validates req and queues it for ingest (after Admit, for a submission from outside).
// An id queued moments ago, within the de-duplication window, is refused with ErrVideoIDTaken.
func Enqueue(ctx context.Context, js jetstream.JetStream, req *laev1.SubmitRequest) error {
	if err := Validate(req); err != nil {
		return err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode submission: %w", err)
	}
	ack, err := js.Publish(ctx, laev1.SubjectIngestWork, b, jetstream.WithMsgID("submit/"+req.VideoID))
	if err != nil {
		return fmt.Errorf("queue %s: %w", req.VideoID, err)
	}
	if ack.Duplicate {
		// Queued moments ago by someone else, within the de-duplication window.
		return fmt.Errorf("%w: %s", ErrVideoIDTaken, req.VideoID)
	}
	return nil
}

// CheckUnused refuses, with ErrVideoIDTaken, a video id with any trace: a verdict, a
// published crop, an end-of-stream (Admit runs it for caller-chosen ids).
func CheckUnused(ctx context.Context, js jetstream.JetStream, id string) error {
	kv, err := js.KeyValue(ctx, laev1.BucketVerdicts)
	if err != nil {
		return fmt.Errorf("check video id %s: %w", id, err)
	}
	if _, err := kv.Get(ctx, id); err == nil {
		return fmt.Errorf("%w: %s", ErrVideoIDTaken, id)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("check video id %s: %w", id, err)
	}
	for _, c := range [][2]string{{laev1.StreamFaces, laev1.FacesSubject(id)}, {laev1.StreamScores, laev1.EOSSubject(id)}} {
		st, err := js.Stream(ctx, c[0])
		if err != nil {
			return fmt.Errorf("check video id %s: %w", id, err)
		}
		if _, err := st.GetLastMsgForSubject(ctx, c[1]); err == nil {
			return fmt.Errorf("%w: %s", ErrVideoIDTaken, id)
		} else if !errors.Is(err, jetstream.ErrMsgNotFound) {
			return fmt.Errorf("check video id %s: %w", id, err)
		}
	}
	return nil
}

// Serve answers requests on lae.submit until ctx ends.
func Serve(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, log *zap.Logger, o Options) error {
	stop, err := Listen(ctx, nc, js, log, o)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return stop()
}

// Listen subscribes the responder and returns once the server has the subscription, so a
// request sent right after it returns is answered; stop drains it. Requests are handled
// with ctx, and held to o.Policy.
func Listen(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, log *zap.Logger, o Options) (stop func() error, err error) {
	sub, err := nc.QueueSubscribe(laev1.SubjectSubmit, QueueGroup, func(m *nats.Msg) {
		reply := handle(ctx, js, m.Data, o.Policy)
		if reply.Error != "" {
			log.Info("submission rejected", zap.String("error", reply.Error))
		} else {
			log.Info("submission queued", zap.String("video_id", reply.VideoID), zap.String("reference", reply.Reference))
		}
		b, _ := json.Marshal(reply)
		if m.Reply != "" {
			_ = m.Respond(b)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", laev1.SubjectSubmit, err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe %s: %w", laev1.SubjectSubmit, err)
	}
	return sub.Drain, nil
}

func handle(ctx context.Context, js jetstream.JetStream, data []byte, p *source.Policy) laev1.SubmitReply {
	var req laev1.SubmitRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return laev1.SubmitReply{Error: fmt.Sprintf("malformed submit request: %v", err)}
	}
	if err := Admit(ctx, js, &req, p); err != nil {
		return laev1.SubmitReply{Reference: req.Reference, Error: err.Error()}
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := Enqueue(pctx, js, &req); err != nil {
		return laev1.SubmitReply{Reference: req.Reference, Error: err.Error()}
	}
	return laev1.SubmitReply{VideoID: req.VideoID, Reference: req.Reference}
}

// Request sends a submission and waits for the reply (the client side of lae submit).
func Request(ctx context.Context, nc *nats.Conn, req laev1.SubmitRequest) (laev1.SubmitReply, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return laev1.SubmitReply{}, fmt.Errorf("encode submission: %w", err)
	}
	msg, err := nc.RequestWithContext(ctx, laev1.SubjectSubmit, b)
	if err != nil {
		return laev1.SubmitReply{}, fmt.Errorf("submit %s: %w", req.URL, err)
	}
	var reply laev1.SubmitReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return laev1.SubmitReply{}, fmt.Errorf("decode submit reply: %w", err)
	}
	return reply, nil
}
