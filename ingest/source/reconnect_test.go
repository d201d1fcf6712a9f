package source_test

import (
	"context"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/ingest/source"
)

// halfThenSilentServer listens on loopback for a live tcp:// stream of a generated clip of n
// frames: its first connection gets half the stream, then silence (a frozen camera) until the
// test ends. It returns the clip's bytes for later connections.
func halfThenSilentServer(t *testing.T, n int) ([]byte, net.Listener) {
	t.Helper()
	data, err := os.ReadFile(makeClipAs(t, t.TempDir(), "live.ts", 160, 120, n, 15))
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write(data[:len(data)/2])
		<-stop
		c.Close()
	}()
	return data, ln
}

// TestReconnectAfterStall serves a live tcp:// stream that stalls half way: the stalled read
// is detected (ReadTimeout), the source is re-opened, and the second connection's frames
// continue the numbering and the clock of the first.
func TestReconnectAfterStall(t *testing.T) {
	data, ln := halfThenSilentServer(t, 30)
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := source.OpenReconnecting(ctx, "tcp://"+ln.Addr().String(),
		source.Options{ReadTimeout: 700 * time.Millisecond, OpenTimeout: 5 * time.Second},
		source.Reconnect{MinBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	defer src.Close()
	// Second connection: the whole stream, then a clean end.
	serveOnce(ln, data)
	frames := readAll(t, ctx, src)
	defer closeFrames(frames)
	require.Equal(t, 1, src.Reconnects())
	require.Greater(t, len(frames), 30, "frames from both connections")
	for i := 1; i < len(frames); i++ {
		require.Greater(t, frames[i].Index, frames[i-1].Index, "frame indices stay unique and increasing")
		require.Equal(t, frames[i-1].SampleIndex+1, frames[i].SampleIndex)
		require.Greater(t, frames[i].PTS, frames[i-1].PTS, "time keeps increasing")
	}
	require.NotZero(t, src.Stats().Errors, "the stall is counted")
}

// TestReconnectGivesUp: when the stream cannot be re-opened the error says so.
func TestReconnectGivesUp(t *testing.T) {
	_, ln := halfThenSilentServer(t, 20)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	src, err := source.OpenReconnecting(ctx, "tcp://"+ln.Addr().String(),
		source.Options{ReadTimeout: 500 * time.Millisecond, OpenTimeout: time.Second},
		source.Reconnect{MaxAttempts: 2, MinBackoff: 10 * time.Millisecond})
	require.NoError(t, err)
	defer src.Close()
	ln.Close() // nobody answers any more
	for {
		f, err := src.Next(ctx)
		if err != nil {
			require.NotErrorIs(t, err, io.EOF)
			require.ErrorIs(t, err, source.ErrTimeout, "the cause is kept")
			require.Contains(t, err.Error(), "reconnecting failed 2 times")
			return
		}
		f.Image.Close()
	}
}
