package model

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
)

// Metadata keys in the ONNX file's custom metadata map (metadata_props). The exporter in
// detector/training writes them; the card beside the model may carry the same facts.
const (
	KeyName      = "lae.name"
	KeyVersion   = "lae.version"
	KeyInputSize = "lae.input_size"
	KeyMean      = "lae.mean"
	KeyStd       = "lae.std"
	KeyColor     = "lae.color"
	KeyThreshold = "lae.threshold"
)

// DefaultThreshold is used when neither the ONNX file nor the card gives one.
const DefaultThreshold = 0.5

// Metadata describes a loaded model: who it is, how its input is prepared, and the decision
// threshold on its score.
type Metadata struct {
	// Name and Version identify the model in every score it produces.
	Name, Version string
	// InputSize is the side of the square input, in pixels.
	InputSize int
	// Mean and Std normalise each RGB channel: (pixel/255 - Mean[c]) / Std[c].
	Mean, Std [3]float32
	// Threshold is the calibrated score above which a crop counts as fake.
	Threshold float64
	// HeatmapW and HeatmapH are the size of the interpretation map per crop.
	HeatmapW, HeatmapH int
	// BGR is true when the model wants BGR channel order (lae.color = "BGR"); RGB otherwise.
	BGR bool
	// ThresholdSource says where Threshold came from: "card", "onnx" or "default".
	ThresholdSource string
}

// card is the part of the model card JSON (<base>.card.json) that the runtime reads.
type card struct {
	Threshold *float64 `json:"threshold"`
	Model     struct {
		Name      string    `json:"name"`
		Version   string    `json:"version"`
		InputSize int       `json:"input_size"`
		Mean      []float64 `json:"mean"`
		Std       []float64 `json:"std"`
	} `json:"model"`
}

// CardPath is the model card that belongs to a model file: the same path with ".onnx"
// replaced by ".card.json".
func CardPath(modelPath string) string {
	return strings.TrimSuffix(modelPath, ".onnx") + ".card.json"
}

// readCard reads the card beside the model; a missing card is not an error (nil, nil).
func readCard(path string) (*card, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read model card: %w", err)
	}
	c, err := parseCard(b)
	if err != nil {
		return nil, fmt.Errorf("parse model card %s: %w", path, err)
	}
	return c, nil
}

func parseCard(b []byte) (*card, error) {
	var c card
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// resolveMetadata merges the ONNX metadata (props) with the card. The ONNX file wins for
// everything that shapes the input (it travels with the weights, so it cannot drift from
// them); the card wins for the threshold, because calibration happens after export.
func resolveMetadata(props map[string]string, c *card, cardPath string) (Metadata, error) {
	var md Metadata
	var cm struct {
		name, version string
		size          int
		mean, std     []float64
	}
	if c != nil {
		cm.name, cm.version, cm.size = c.Model.Name, c.Model.Version, c.Model.InputSize
		cm.mean, cm.std = c.Model.Mean, c.Model.Std
	}

	md.Name = firstNonEmpty(props[KeyName], cm.name)
	md.Version = firstNonEmpty(props[KeyVersion], cm.version)
	if md.Name == "" {
		return md, fmt.Errorf("model metadata: no %s in the ONNX file and no model.name in %s", KeyName, cardPath)
	}
	if md.Version == "" {
		md.Version = "unversioned"
	}

	switch {
	case props[KeyInputSize] != "":
		n, err := strconv.Atoi(strings.TrimSpace(props[KeyInputSize]))
		if err != nil || n < 8 || n > 4096 {
			return md, fmt.Errorf("model metadata: %s = %q: want an integer in [8, 4096]", KeyInputSize, props[KeyInputSize])
		}
		md.InputSize = n
	case cm.size != 0:
		if cm.size < 8 || cm.size > 4096 {
			return md, fmt.Errorf("model card %s: model.input_size = %d: want [8, 4096]", cardPath, cm.size)
		}
		md.InputSize = cm.size
	default:
		return md, fmt.Errorf("model metadata: no %s in the ONNX file and no model.input_size in %s", KeyInputSize, cardPath)
	}

	var err error
	if md.Mean, err = triple(KeyMean, props[KeyMean], cm.mean, cardPath, false); err != nil {
		return md, err
	}
	if md.Std, err = triple(KeyStd, props[KeyStd], cm.std, cardPath, true); err != nil {
		return md, err
	}

	switch strings.ToUpper(strings.TrimSpace(props[KeyColor])) {
	case "", "RGB":
	case "BGR":
		md.BGR = true
	default:
		return md, fmt.Errorf("model metadata: %s = %q: want RGB or BGR", KeyColor, props[KeyColor])
	}

	md.Threshold, md.ThresholdSource = DefaultThreshold, "default"
	if v := strings.TrimSpace(props[KeyThreshold]); v != "" {
		t, err := strconv.ParseFloat(v, 64)
		if err != nil || !validProb(t) {
			return md, fmt.Errorf("model metadata: %s = %q: want a number in [0, 1]", KeyThreshold, v)
		}
		md.Threshold, md.ThresholdSource = t, "onnx"
	}
	if c != nil && c.Threshold != nil {
		if !validProb(*c.Threshold) {
			return md, fmt.Errorf("model card %s: threshold = %v: want [0, 1]", cardPath, *c.Threshold)
		}
		md.Threshold, md.ThresholdSource = *c.Threshold, "card"
	}
	return md, nil
}

func validProb(v float64) bool { return !math.IsNaN(v) && v >= 0 && v <= 1 }

// triple parses "a,b,c" from the ONNX metadata, else takes a 3-list from the card.
func triple(key, prop string, fromCard []float64, cardPath string, positive bool) ([3]float32, error) {
	var out [3]float32
	var vals []float64
	switch {
	case strings.Trim(prop, "[] ") != "":
		// "a,b,c" is the contract; "[a, b, c]" (a JSON list written as a string) is accepted too.
		parts := strings.Split(strings.Trim(prop, "[] "), ",")
		if len(parts) != 3 {
			return out, fmt.Errorf("model metadata: %s = %q: want three comma-separated numbers", key, prop)
		}
		for _, p := range parts {
			v, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
			if err != nil {
				return out, fmt.Errorf("model metadata: %s = %q: %w", key, prop, err)
			}
			vals = append(vals, v)
		}
	case len(fromCard) == 3:
		vals = fromCard
	case fromCard != nil:
		return out, fmt.Errorf("model card %s: %s has %d values: want 3", cardPath, key, len(fromCard))
	default:
		return out, fmt.Errorf("model metadata: no %s in the ONNX file and none in %s", key, cardPath)
	}
	for i, v := range vals {
		if math.IsNaN(v) || math.IsInf(v, 0) || (positive && v <= 0) {
			return out, fmt.Errorf("model metadata: %s[%d] = %v is not usable", key, i, v)
		}
		out[i] = float32(v)
	}
	return out, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
