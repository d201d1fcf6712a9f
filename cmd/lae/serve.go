package main

import (
	"context"
	"flag"

	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/ops"
	"github.com/lae-screening/lae/internal/serve"
)

var serveCommand = config.Command{
	Name:     "serve",
	Synopsis: "serve [flags]",
	Doc: `Runs an HTTP API and a live page over lae. By default it also runs every stage in one
process with an embedded NATS server that external lae submit and lae watch clients can
reach; with --api-only it runs the API alone on the NATS of --nats, where a deployment's
ingest, detect and aggregate roles do the work.`,
	Bind: func(fs *flag.FlagSet, c *config.Config) {
		config.StackFlags(fs, c)
		config.ServeFlags(fs, c)
	},
}

// serveCmd runs the server until SIGINT/SIGTERM or a stage failure.
func serveCmd(ctx context.Context, args []string) error {
	cfg, rest, err := config.Parse(serveCommand, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return config.Usagef("unexpected arguments %q", rest)
	}
	if err := cfg.Validate(cfg.ServeRoles()); err != nil {
		return err
	}
	log, err := ops.NewLogger(cfg.Log)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	routeFFmpegLog(log.Named("ffmpeg"))
	return serve.Run(ctx, serve.Options{Config: cfg, Logger: log}, nil)
}
