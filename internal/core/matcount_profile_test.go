//go:build matprofile

package core

import "gocv.io/x/gocv"

// liveMats counts live gocv Mats (exact with -tags matprofile).
func liveMats() int { return gocv.MatProfile.Count() }
