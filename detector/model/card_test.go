package model

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReadCardInfo(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
		return p
	}
	cases := []struct {
		name    string
		path    string
		want    CardInfo
		wantErr string
	}{
		{"calibrated", write("a.card.json", `{"threshold":0.42,"model":{"name":"lae-v1","version":"3"}}`),
			CardInfo{Name: "lae-v1", Version: "3", Threshold: 0.42}, ""},
		{"no threshold", write("b.card.json", `{"model":{"name":"x"}}`), CardInfo{Name: "x", Threshold: DefaultThreshold}, ""},
		{"threshold out of range", write("c.card.json", `{"threshold":-0.1}`), CardInfo{}, "outside [0,1]"},
		{"not json", write("d.card.json", `threshold: 0.5`), CardInfo{}, "d.card.json"},
		{"missing", filepath.Join(dir, "none.card.json"), CardInfo{}, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadCardInfo(tc.path)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	// The shipped card, when present, must be readable by the roles that only read cards.
	if _, err := os.Stat(CardPath(shippedModel)); err == nil {
		info, err := ReadCardInfo(CardPath(shippedModel))
		require.NoError(t, err)
		require.NotEmpty(t, info.Name)
	}
}
