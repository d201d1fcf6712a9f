//go:build !matprofile

package testvideo_test

// liveMats is unavailable without the matprofile build tag.
func liveMats() (int, bool) { return 0, false }
