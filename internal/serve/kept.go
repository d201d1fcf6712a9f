package serve

import (
	"errors"
	"os"
	"path/filepath"

	laev1 "github.com/lae-screening/lae/schemas/v1"
)

// Per-video files kept across restarts (webhook URLs, upload names) live in a directory of
// the store, one file per video id, owner-only.

// keepFile writes b as dir/<videoID>. It is written aside and renamed, so a crash never leaves
// half a file. Without a directory or with an id that cannot name a file it does nothing.
func keepFile(dir, videoID string, b []byte) error {
	if dir == "" || laev1.ValidateVideoID(videoID) != nil {
		return nil
	}
	tmp := filepath.Join(dir, "."+videoID+".tmp")
	err := os.WriteFile(tmp, b, 0o600)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, videoID))
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// dropKept removes dir/<videoID>; a file that is not there is no error.
func dropKept(dir, videoID string) error {
	if dir == "" || laev1.ValidateVideoID(videoID) != nil {
		return nil
	}
	if err := os.Remove(filepath.Join(dir, videoID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
