//go:build !matprofile

package testenv

func liveMats() (int, bool) { return 0, false }
