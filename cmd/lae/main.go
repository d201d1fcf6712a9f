// Command lae screens video for face manipulations with the Locality-Aware AutoEncoder.
//
//	lae scan [flags] <file-or-url>...   scan videos on this machine (embedded NATS, all stages in-process)
//	lae crops --out DIR <input>...      write aligned face crops exactly as the scanner sees them
//	lae serve                           everything in one process, with NATS on a port, HTTP API and live page
//	lae ingest|detect|aggregate         the distributed roles, over an external NATS
//	lae submit|watch|rescore            clients of a deployment
//
// main only wires signals and dispatches; each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// exitError carries a specific exit code out of a subcommand.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

var commands = map[string]struct {
	run  func(ctx context.Context, args []string) error
	help string
}{
	"scan":      {scanCmd, "scan videos or streams and print a verdict per input"},
	"crops":     {cropsCmd, "write aligned face crops (the detector's input geometry) for training"},
	"ingest":    {ingestCmd, "distributed role: answer lae.submit and ingest queued videos"},
	"detect":    {detectCmd, "distributed role: score face crops with the LAE model"},
	"aggregate": {aggregateCmd, "distributed role: turn scores into verdicts with evidence"},
	"submit":    {submitCmd, "queue video or stream URLs for screening on a NATS deployment"},
	"watch":     {watchCmd, "print verdicts as they arrive"},
	"serve":     {serveCmd, "all-in-one: embedded NATS on a port, every stage, HTTP API and live page"},
	"rescore":   {rescoreCmd, "score archived crops again with the current model (new verdict revisions)"},
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: lae <command> [flags] [args]\n\ncommands:\n")
	for _, name := range []string{"scan", "crops", "ingest", "detect", "aggregate", "serve", "submit", "watch", "rescore"} {
		fmt.Fprintf(os.Stderr, "  %-8s %s\n", name, commands[name].help)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'lae <command> -h' for the flags of a command.\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "lae: unknown command %q\n", os.Args[1])
		usage()
		os.Exit(2)
	}
	routeFFmpegLog(nil) // commands with a logger route it there instead
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.run(ctx, os.Args[2:])
	stop()
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		os.Exit(ee.code)
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "lae %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}
