//go:build !matprofile

package landmarks

// liveMats is unavailable without the matprofile build tag.
func liveMats() (int, bool) { return 0, false }
