//go:build !matprofile

package pipeline

// liveMats is unavailable without the matprofile build tag.
func liveMats() (int, bool) { return 0, false }
