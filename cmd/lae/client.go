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
	"github.com/lae-screening/lae/internal/ops"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// clientFlags are the connection flags of the client commands (submit, watch).
type clientFlags struct {
	cfgPath, natsURL string
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.cfgPath, "config", os.Getenv("LAE_CONFIG"), "configuration file for the NATS connection (credentials, TLS); env LAE_CONFIG")
	fs.StringVar(&c.natsURL, "nats", "", "NATS server URLs, comma-separated (default: config, then nats://127.0.0.1:4222)")
}

func (c *clientFlags) connect(name string) (*nats.Conn, error) {
	cfg, err := config.Load(c.cfgPath)
	if err != nil {
		return nil, err
	}
	if c.natsURL != "" {
		cfg.NATS.URLs = config.SplitList(c.natsURL)
	}
	return ops.Connect(cfg.NATS, name, zap.NewNop())
}

// submitCmd publishes submissions on lae.submit and prints the assigned video ids.
func submitCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("submit", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	fps := fs.Float64("fps", -1, "sampling rate (frames per second; 0 = every frame; default: the ingest's)")
	maxDur := fs.Duration("max-duration", 0, "stop after this much media time (0 = whole source)")
	priority := fs.Int("priority", 0, "priority recorded with the submission")
	ref := fs.String("ref", "", "your own reference, echoed in the reply")
	id := fs.String("id", "", "video id to use (only with one URL; default: assigned)")
	jsonOut := fs.Bool("json", false, "print the replies as JSON lines")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for each reply")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lae submit [flags] URL...\n\nQueues each URL for screening and prints its video id (follow it with lae watch).\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 || (*id != "" && fs.NArg() > 1) {
		fs.Usage()
		return exitError{2}
	}
	nc, err := cf.connect("lae-submit")
	if err != nil {
		return err
	}
	defer nc.Close()
	failed := 0
	for _, u := range fs.Args() {
		req := laev1.SubmitRequest{URL: u, VideoID: *id, Priority: *priority, Reference: *ref, MaxDurationSeconds: maxDur.Seconds()}
		if *fps >= 0 {
			req.SampleFPS = fps
		}
		rctx, cancel := context.WithTimeout(ctx, *timeout)
		reply, err := submit.Request(rctx, nc, req)
		cancel()
		if err != nil {
			reply = laev1.SubmitReply{Reference: *ref, Error: err.Error()}
		}
		if reply.Error != "" {
			failed++
		}
		switch {
		case *jsonOut:
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
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	var cf clientFlags
	cf.register(fs)
	all := fs.Bool("all", false, "follow the verdicts of every video until interrupted")
	jsonOut := fs.Bool("json", false, "print each verdict as one JSON line")
	timeout := fs.Duration("timeout", 0, "give up after this long (0 = wait forever)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: lae watch [flags] (VIDEO_ID... | --all)\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*all && fs.NArg() > 0) || (!*all && fs.NArg() == 0) {
		fs.Usage()
		return exitError{2}
	}
	for _, id := range fs.Args() {
		if err := laev1.ValidateVideoID(id); err != nil {
			return err
		}
	}
	nc, err := cf.connect("lae-watch")
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverNewPolicy}
	if *all {
		cfg.FilterSubjects = []string{laev1.SubjectVerdictsPrefix + ">"}
	} else {
		// Ids given: their latest verdicts may already be stored; start from them.
		cfg.DeliverPolicy = jetstream.DeliverLastPerSubjectPolicy
		for _, id := range fs.Args() {
			cfg.FilterSubjects = append(cfg.FilterSubjects, laev1.VerdictSubject(id))
		}
	}
	cons, err := js.OrderedConsumer(ctx, laev1.StreamVerdicts, cfg)
	if err != nil {
		return fmt.Errorf("watch verdicts: %w", err)
	}
	waiting := map[string]bool{}
	for _, id := range fs.Args() {
		waiting[id] = true
	}
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("watch verdicts: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	for *all || len(waiting) > 0 {
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
		if *jsonOut {
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
