//go:build !matprofile

package core

// liveMats is constant without -tags matprofile; the RSS bound still applies.
func liveMats() int { return 0 }
