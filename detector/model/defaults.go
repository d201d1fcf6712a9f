package model

import (
	"fmt"
	"os"
	"path/filepath"
)

// ShippedPath is the release model, relative to the repository root.
const ShippedPath = "detector/models/lae-v2.onnx"

// DefaultPath finds the shipped model: relative to the working directory or the executable,
// walking up to the repository root (bin/lae and `go run` both find it). It returns
// ShippedPath unchanged when nothing is found, so the error names the expected file.
func DefaultPath() string {
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, dir := range starts {
		for d := dir; ; d = filepath.Dir(d) {
			p := filepath.Join(d, ShippedPath)
			if _, err := os.Stat(p); err == nil {
				return p
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return ShippedPath
}

// PathOrDefault is path, or the shipped model when path is empty: the one meaning of an
// unset model option.
func PathOrDefault(path string) string {
	if path == "" {
		return DefaultPath()
	}
	return path
}

// ResolveCard reads the model's card for the verdict threshold and the model's identity.
// threshold 0 means unset: the card's calibrated threshold is used; any other value
// overrides it (the identity still comes from the card when there is one). This is the one
// place the "unset threshold" convention lives, for every role.
func ResolveCard(modelPath string, threshold float64) (CardInfo, error) {
	modelPath = PathOrDefault(modelPath)
	info, err := ReadCardInfo(CardPath(modelPath))
	switch {
	case err == nil && threshold > 0:
		info.Threshold = threshold
	case err != nil && threshold > 0:
		// An explicit threshold needs no card; a model without one is still usable.
		info = CardInfo{Threshold: threshold}
	case err != nil:
		return CardInfo{}, fmt.Errorf("calibrated threshold of %s: %w (give --threshold)", modelPath, err)
	}
	return info, nil
}
