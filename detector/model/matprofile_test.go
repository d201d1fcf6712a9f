//go:build matprofile

package model

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"gocv.io/x/gocv"
)

// TestPreprocessFreesMats runs with `go test -tags matprofile`: every Mat the OpenCV path
// creates is closed, whether the crop is resized or not.
func TestPreprocessFreesMats(t *testing.T) {
	m := loadTiny(t, Options{})
	rng := rand.New(rand.NewPCG(1, 1))
	before := gocv.MatProfile.Count()
	for _, sz := range [][2]int{{256, 256}, {64, 64}, {40, 90}} {
		for i := 0; i < 20; i++ {
			_, err := m.Predict([]Crop{noise(rng, sz[0], sz[1])})
			require.NoError(t, err)
		}
	}
	require.Equal(t, before, gocv.MatProfile.Count(), "live Mats after preprocessing")
}
