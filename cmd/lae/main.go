// Command lae screens video for face manipulations with the Locality-Aware AutoEncoder.
//
//	lae scan [flags] <file-or-url>...   scan videos on this machine (embedded NATS, all stages in-process)
//	lae crops --out DIR <input>...      write aligned face crops exactly as the scanner sees them
//	lae serve                           everything in one process, with NATS on a port, HTTP API and live page
//	lae ingest|detect|aggregate         the distributed roles, over an external NATS
//	lae submit|watch|rescore            clients of a deployment
//	lae version                         build and model information
//
// main only wires signals and dispatches; each subcommand lives in its own file.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/memtune"
)

// exitError carries a specific exit code out of a subcommand.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

var commands = map[string]struct {
	run  func(ctx context.Context, args []string) error
	help string
}{
	"scan":      {scanCmd, "scan videos, directories, stdin or streams and print a verdict per input"},
	"crops":     {cropsCmd, "write aligned face crops (the detector's input geometry) for training"},
	"ingest":    {ingestCmd, "distributed role: answer lae.submit and ingest queued videos"},
	"detect":    {detectCmd, "distributed role: score face crops with the LAE model"},
	"aggregate": {aggregateCmd, "distributed role: turn scores into verdicts with evidence"},
	"submit":    {submitCmd, "queue video or stream URLs for screening on a NATS deployment"},
	"watch":     {watchCmd, "print verdicts as they arrive"},
	"serve":     {serveCmd, "all-in-one: embedded NATS on a port, every stage, HTTP API and live page"},
	"rescore":   {rescoreCmd, "score archived crops again with the current model (new verdict revisions)"},
	"provision": {provisionCmd, "create or update the streams and buckets (operators; once per deployment)"},
	"version":   {versionCmd, "print the version, commit, Go version and the shipped model"},
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: lae <command> [flags] [args]\n\ncommands:\n")
	for _, name := range []string{"scan", "crops", "ingest", "detect", "aggregate", "serve", "submit", "watch", "rescore", "provision", "version"} {
		fmt.Fprintf(w, "  %-9s %s\n", name, commands[name].help)
	}
	fmt.Fprintf(w, "\nRun 'lae <command> --help' for the flags of a command (the settings among them are also config\nkeys and LAE_* variables: deploy/lae.example.yaml). 'lae --version' prints the build.\n")
}

func main() {
	memtune.Apply()
	os.Exit(run(os.Args[1:]))
}

// run executes one command line and returns the exit status: 0 done, 1 failed, 2 usage
// error, 130 interrupted.
func run(args []string) int {
	if len(args) == 0 {
		usage(os.Stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(os.Stdout)
		return 0
	case "--version", "-version", "-v":
		name = "version"
	}
	cmd, ok := commands[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "lae: unknown command %q (run 'lae --help')\n", name)
		return 2
	}
	routeFFmpegLog(nil) // commands with a logger route it there instead
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cmd.run(ctx, args[1:])
	interrupted := ctx.Err() != nil
	stop()
	var ee exitError
	var ue config.UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "lae %s: %v (run 'lae %s --help')\n", name, oneLine(ue.Error()), name)
		return 2
	case interrupted && errors.Is(err, context.Canceled):
		return 130
	default:
		fmt.Fprintf(os.Stderr, "lae %s: %v\n", name, oneLine(err.Error()))
		return 1
	}
}
