package core

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/lae-screening/lae/ingest/submit"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Submit queues a video as every client does, through the lae.submit responder, and returns
// its video id. A rejected submission (bad URL, bad options) is an error with the reason.
func (s *Stack) Submit(ctx context.Context, req laev1.SubmitRequest) (string, error) {
	reply, err := submit.Request(ctx, s.NC, req)
	if err != nil {
		return "", err
	}
	if reply.Error != "" {
		return "", fmt.Errorf("%s", reply.Error)
	}
	return reply.VideoID, nil
}

// Scan submits url and waits for its final verdict (Submit, then WaitFinal). A source that
// cannot be read yields a final verdict "error" with the reason, not a Go error: Go errors
// mean the submission was refused or the stack failed.
func (s *Stack) Scan(ctx context.Context, url string) (laev1.Verdict, error) {
	id, err := s.Submit(ctx, laev1.SubmitRequest{URL: url})
	if err != nil {
		return laev1.Verdict{}, err
	}
	return s.WaitFinal(ctx, id, nil)
}

// WaitFinal follows videoID's verdicts in the verdicts bucket, from the latest stored one,
// until a final verdict; update (optional) sees every verdict before it, rolling ones
// included. It also returns when a stage of the stack fails.
func (s *Stack) WaitFinal(ctx context.Context, videoID string, update func(laev1.Verdict)) (laev1.Verdict, error) {
	kv, err := s.JS.KeyValue(ctx, laev1.BucketVerdicts)
	if err != nil {
		return laev1.Verdict{}, fmt.Errorf("open verdicts bucket: %w", err)
	}
	w, err := kv.Watch(ctx, videoID)
	if err != nil {
		return laev1.Verdict{}, fmt.Errorf("watch verdict %s: %w", videoID, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return laev1.Verdict{}, ctx.Err()
		case <-s.failed:
			return laev1.Verdict{}, s.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return laev1.Verdict{}, fmt.Errorf("verdict watch for %s closed", videoID)
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var v laev1.Verdict
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				return laev1.Verdict{}, fmt.Errorf("decode verdict %s: %w", videoID, err)
			}
			if v.Final {
				return v, nil
			}
			if update != nil {
				update(v)
			}
		}
	}
}

// EvidenceImages fetches the verdict's evidence images (JPEG) by object name.
func (s *Stack) EvidenceImages(ctx context.Context, v laev1.Verdict) (map[string][]byte, error) {
	obj, err := s.JS.ObjectStore(ctx, laev1.BucketEvidence)
	if err != nil {
		return nil, fmt.Errorf("open evidence store: %w", err)
	}
	images := map[string][]byte{}
	for _, ev := range v.Evidence {
		if ev.Image == "" {
			continue
		}
		b, err := obj.GetBytes(ctx, ev.Image)
		if err != nil {
			return images, fmt.Errorf("fetch evidence %s: %w", ev.Image, err)
		}
		images[ev.Image] = b
	}
	return images, nil
}

// WriteEvidence copies the verdict's evidence images into dir and returns the file paths, in
// evidence order.
func (s *Stack) WriteEvidence(ctx context.Context, v laev1.Verdict, dir string) ([]string, error) {
	images, err := s.EvidenceImages(ctx, v)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("evidence dir %s: %w", dir, err)
	}
	var paths []string
	for _, ev := range v.Evidence {
		b, ok := images[ev.Image]
		if !ok {
			continue
		}
		p := filepath.Join(dir, strings.ReplaceAll(ev.Image, "/", "_"))
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return paths, fmt.Errorf("write evidence %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}
