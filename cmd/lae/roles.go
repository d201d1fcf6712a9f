package main

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/core"
	"github.com/lae-screening/lae/internal/ops"
)

// roleCommand is a distributed role's command line: NATS and the operations endpoint come
// from flags, everything else from the config file and LAE_* variables.
func roleCommand(name, doc string) config.Command {
	return config.Command{Name: name, Synopsis: name + " [flags]", Doc: doc, Bind: config.RoleFlags}
}

// runRole starts the role's stages on the configured NATS and runs until SIGINT/SIGTERM
// (graceful stop) or until a stage fails (exit 1, so the supervisor restarts the process).
func runRole(ctx context.Context, cmd config.Command, roles config.Roles, args []string) error {
	cfg, rest, err := config.Parse(cmd, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return config.Usagef("unexpected arguments %q", rest)
	}
	if err := cfg.Validate(roles); err != nil {
		return err
	}
	log, err := ops.NewLogger(cfg.Log)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	log = log.With(zap.String("role", cmd.Name))
	routeFFmpegLog(log.Named("ffmpeg"))
	st, err := core.Start(ctx, core.Options{Config: cfg, Roles: roles, Name: cmd.Name, Logger: log})
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-st.Failed():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*cfg.ShutdownTimeout+10*time.Second)
	defer cancel()
	st.Close(sctx)
	if err := st.Err(); err != nil {
		return fmt.Errorf("%s role: %w", cmd.Name, err)
	}
	return nil
}

func ingestCmd(ctx context.Context, args []string) error {
	return runRole(ctx, roleCommand("ingest", "Answers lae.submit and ingests videos from the work queue."),
		config.Roles{Ingest: true}, args)
}

func detectCmd(ctx context.Context, args []string) error {
	return runRole(ctx, roleCommand("detect", "Scores face crops with the LAE model (detector.model)."),
		config.Roles{Detect: true}, args)
}

func aggregateCmd(ctx context.Context, args []string) error {
	return runRole(ctx, roleCommand("aggregate", "Turns scores into verdicts with evidence; the threshold comes from the model card unless aggregator.threshold is set."),
		config.Roles{Aggregate: true}, args)
}
