//go:build matprofile

package testenv

import "gocv.io/x/gocv"

func liveMats() (int, bool) { return gocv.MatProfile.Count(), true }
