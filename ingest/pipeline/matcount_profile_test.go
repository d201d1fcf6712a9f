//go:build matprofile

package pipeline

import "gocv.io/x/gocv"

// liveMats is the number of gocv Mats not yet closed (build tag matprofile).
func liveMats() (int, bool) { return gocv.MatProfile.Count(), true }
