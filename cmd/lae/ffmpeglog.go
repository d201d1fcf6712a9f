package main

import (
	"strings"

	"github.com/asticode/go-astiav"
	"go.uber.org/zap"
)

// routeFFmpegLog sends FFmpeg's process-wide log to zap at warning level and above, so its
// messages neither clutter a user's terminal nor bypass the structured logs of a service.
// A nil logger silences FFmpeg below fatal.
func routeFFmpegLog(log *zap.Logger) {
	if log == nil {
		astiav.SetLogLevel(astiav.LogLevelFatal)
		return
	}
	astiav.SetLogLevel(astiav.LogLevelWarning)
	astiav.SetLogCallback(func(_ astiav.Classer, l astiav.LogLevel, _, msg string) {
		msg = strings.TrimSpace(msg)
		if msg == "" {
			return
		}
		if l <= astiav.LogLevelError {
			log.Error(msg, zap.String("source", "ffmpeg"))
		} else {
			log.Warn(msg, zap.String("source", "ffmpeg"))
		}
	})
}
