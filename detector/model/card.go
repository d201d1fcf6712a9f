package model

import (
	"errors"
	"fmt"
)

// CardInfo is what a role that does not run the model (the aggregator) needs from the card.
type CardInfo struct {
	Name, Version string
	Threshold     float64
}

// ReadCardInfo reads the calibrated threshold and the model's identity from a model card
// (<model>.card.json), so the aggregator decides with the same threshold the scanner uses.
func ReadCardInfo(path string) (CardInfo, error) {
	c, err := readCard(path)
	if err != nil {
		return CardInfo{}, err
	}
	if c == nil {
		return CardInfo{}, fmt.Errorf("model card %s: %w", path, errors.New("no such file"))
	}
	info := CardInfo{Name: c.Model.Name, Version: c.Model.Version, Threshold: DefaultThreshold}
	if c.Threshold != nil {
		if !validProb(*c.Threshold) {
			return CardInfo{}, fmt.Errorf("model card %s: threshold %v outside [0,1]", path, *c.Threshold)
		}
		info.Threshold = *c.Threshold
	}
	return info, nil
}
