package main

import (
	"context"
	"fmt"
	"time"

	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/core"
	laev1 "github.com/lae-screening/lae/schemas/v1"
)

var provisionCommand = config.Command{
	Name:     "provision",
	Synopsis: "provision [flags]",
	Doc: `Creates or updates the streams, the verdicts bucket and the evidence and uploads
stores with the configured retention. Run it once per deployment (and after changing
retention or upgrading lae) as a user allowed to manage streams: the roles' users may only
look them up.`,
	Bind: config.ClientFlags,
}

func provisionCmd(ctx context.Context, args []string) error {
	cfg, rest, err := config.Parse(provisionCommand, args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return config.Usagef("unexpected arguments %q", rest)
	}
	nc, js, err := connectJS(cfg, "lae-provision")
	if err != nil {
		return err
	}
	defer nc.Close()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := laev1.Provision(pctx, js, core.Retention(cfg.Retention)); err != nil {
		return err
	}
	fmt.Println("provisioned")
	return nil
}
