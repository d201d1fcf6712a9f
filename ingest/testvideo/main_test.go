package testvideo_test

import (
	"os"
	"testing"

	"github.com/asticode/go-astiav"
)

// TestMain silences FFmpeg's process-wide logging (x264 statistics, demuxer
// complaints about the deliberately broken files); failures surface as errors.
func TestMain(m *testing.M) {
	astiav.SetLogLevel(astiav.LogLevelFatal)
	os.Exit(m.Run())
}
