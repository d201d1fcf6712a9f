package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Usage is what one child process cost.
type Usage struct {
	Wall time.Duration
	// CPU is user + system time of the child (and its waited-for children).
	CPU time.Duration
	// PeakRSSMB is the child's largest resident set, in MiB.
	PeakRSSMB float64
}

// UsageOf reads a finished process's rusage. On Linux Maxrss is in KiB.
func UsageOf(ps *os.ProcessState, wall time.Duration) Usage {
	u := Usage{Wall: wall}
	if ps == nil {
		return u
	}
	u.CPU = ps.UserTime() + ps.SystemTime()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok && ru != nil {
		u.PeakRSSMB = RSSMB(ru.Maxrss)
	}
	return u
}

// RSSMB converts rusage's Maxrss (KiB on Linux) to MiB.
func RSSMB(maxrssKB int64) float64 { return float64(maxrssKB) / 1024 }

// RunChild runs name with args, returns its stdout and what it cost. A non-zero exit is an
// error carrying the end of stderr; the usage is still returned.
func RunChild(ctx context.Context, name string, args ...string) ([]byte, Usage, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	err := cmd.Run()
	u := UsageOf(cmd.ProcessState, time.Since(t0))
	if err != nil {
		tail := errb.Bytes()
		if len(tail) > 500 {
			tail = tail[len(tail)-500:]
		}
		return out.Bytes(), u, fmt.Errorf("run %s: %w: %s", name, err, bytes.TrimSpace(tail))
	}
	return out.Bytes(), u, nil
}
