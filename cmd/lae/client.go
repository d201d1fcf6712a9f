package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/lae-screening/lae/ingest/submit"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/jsretry"
	"github.com/lae-screening/lae/internal/ops"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// connect opens a client's NATS connection from the parsed configuration.
func connect(cfg config.Config, name string) (*nats.Conn, error) {
	if err := cfg.Validate(config.Roles{}); err != nil {
		return nil, err
	}
	return ops.Connect(cfg.NATS, name, zap.NewNop())
}

// connectJS is connect plus the JetStream context, for the clients that use streams.
func connectJS(cfg config.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	nc, err := connect(cfg, name)
	if err != nil {
		return nil, nil, err
	}
	js, err := jsretry.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

// submitCmd publishes submissions on lae.submit and prints the assigned video ids.
func submitCmd(ctx context.Context, args []string) error {
	var (
		fps             float64
		maxDur, timeout time.Duration
		priority        int
		ref, id         string
		jsonOut         bool
	)
	cmd := config.Command{Name: "submit", Synopsis: "submit [flags] URL...",
		Doc: "Queues each URL for screening and prints its video id (follow it with lae watch).",
		Bind: func(fs *flag.FlagSet, c *config.Config) {
			config.ClientFlags(fs, c)
			fs.Float64Var(&fps, "fps", -1, "sampling rate (frames per second; 0 = every frame; -1 = the ingest's default)")
			fs.DurationVar(&maxDur, "max-duration", 0, "stop after this much media time (0 = whole source)")
			fs.IntVar(&priority, "priority", 0, "priority recorded with the submission")
			fs.StringVar(&ref, "ref", "", "your own reference, echoed in the reply")
			fs.StringVar(&id, "id", "", "video id to use (only with one URL; \"\" = assigned)")
			fs.BoolVar(&jsonOut, "json", false, "print the replies as JSON lines")
			fs.DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for each reply")
		}}
	cfg, urls, err := config.Parse(cmd, args)
	if err != nil {
		return err
	}
	if len(urls) == 0 {
		return config.Usagef("no URL given")
	}
	if id != "" && len(urls) > 1 {
		return config.Usagef("--id names one video: give one URL")
	}
	nc, err := connect(cfg, "lae-submit")
	if err != nil {
		return err
	}
	defer nc.Close()
	failed := 0
	for _, u := range urls {
		req := laev1.SubmitRequest{URL: u, VideoID: id, Priority: priority, Reference: ref, MaxDurationSeconds: maxDur.Seconds()}
		if fps >= 0 {
			req.SampleFPS = &fps
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		reply, err := submit.Request(rctx, nc, req)
		cancel()
		if err != nil {
			reply = laev1.SubmitReply{Reference: ref, Error: err.Error()}
		}
		if reply.Error != "" {
			failed++
		}
		switch {
		case jsonOut:
			b, _ := json.Marshal(struct {
				URL string `json:"url"`
				laev1.SubmitReply
			}{u, reply})
			fmt.Println(string(b))
		case reply.Error != "":
			fmt.Printf("%s: REJECTED: %s\n", u, oneLine(reply.Error))
		default:
			fmt.Printf("%s\t%s\n", reply.VideoID, u)
		}
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
}

// watchCmd prints verdicts as they arrive. With video ids it waits for their final verdicts
// (including ones published before it started) and exits; with --all it follows every video.
func watchCmd(ctx context.Context, args []string) error {
	var all, jsonOut bool
	var timeout time.Duration
	cmd := config.Command{Name: "watch", Synopsis: "watch [flags] (VIDEO_ID... | --all)",
		Doc: "Prints verdicts as they arrive. With video ids it waits for their final verdicts (including ones\npublished before it started) and exits; with --all it follows every video.",
		Bind: func(fs *flag.FlagSet, c *config.Config) {
			config.ClientFlags(fs, c)
			fs.BoolVar(&all, "all", false, "follow the verdicts of every video until interrupted")
			fs.BoolVar(&jsonOut, "json", false, "print each verdict as one JSON line")
			fs.DurationVar(&timeout, "timeout", 0, "give up after this long (0 = wait forever)")
		}}
	cfg, ids, err := config.Parse(cmd, args)
	if err != nil {
		return err
	}
	if all == (len(ids) > 0) {
		return config.Usagef("give video ids or --all")
	}
	for _, id := range ids {
		if err := laev1.ValidateVideoID(id); err != nil {
			return config.UsageError{Err: err}
		}
	}
	nc, js, err := connectJS(cfg, "lae-watch")
	if err != nil {
		return err
	}
	defer nc.Close()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cc := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if all {
		cc.FilterSubjects = []string{laev1.SubjectVerdictsPrefix + ">"}
	} else {
		// Ids given: their latest verdicts may already be stored; start from them.
		cc.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
		for _, id := range ids {
			cc.FilterSubjects = append(cc.FilterSubjects, laev1.VerdictSubject(id))
		}
	}
	// Asked again when a cluster electing a leader leaves the request unanswered.
	var cons jetstream.Consumer
	err = jsretry.Do(ctx, func(ctx context.Context) (err error) {
		cons, err = js.OrderedConsumer(ctx, laev1.StreamVerdicts, cc)
		return err
	})
	if err != nil {
		return fmt.Errorf("watch verdicts: %w", err)
	}
	waiting := map[string]bool{}
	for _, id := range ids {
		waiting[id] = true
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("watch verdicts: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for all || len(waiting) > 0 {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				if len(waiting) > 0 {
					return fmt.Errorf("no final verdict for %d video(s): %w", len(waiting), ctx.Err())
				}
				return nil
			}
			return fmt.Errorf("watch verdicts: %w", err)
		}
		var v laev1.Verdict
		if err := json.Unmarshal(msg.Data(), &v); err != nil {
			fmt.Fprintf(os.Stderr, "lae watch: skipping malformed verdict on %s: %v\n", msg.Subject(), err)
			continue
		}
		if jsonOut {
			fmt.Println(string(msg.Data()))
		} else {
			state := "final"
			if !v.Final {
				state = "update"
			}
			fmt.Printf("%s [%s r%d] ", v.VideoID, state, v.Revision)
			printVerdict(os.Stdout, scanResult{Verdict: v})
		}
		if v.Final {
			delete(waiting, v.VideoID)
		}
	}
	return nil
}
