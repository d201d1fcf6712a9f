//go:build matprofile

package landmarks

import "gocv.io/x/gocv"

// liveMats is the number of gocv Mats not yet closed (build tag matprofile).
func liveMats() (int, bool) { return gocv.MatProfile.Count(), true }
