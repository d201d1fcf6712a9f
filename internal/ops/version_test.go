package ops

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestBuildFrom(t *testing.T) {
	tests := []struct {
		name     string
		main     string
		settings map[string]string
		want     string
	}{
		{"checkout", "(devel)", map[string]string{"vcs.revision": "0123456789abcdef0123", "vcs.modified": "false"}, "devel+0123456789ab"},
		{"dirty checkout", "(devel)", map[string]string{"vcs.revision": "0123456789abcdef0123", "vcs.modified": "true"}, "devel+0123456789ab-dirty"},
		{"release", "(devel)", map[string]string{"-ldflags": "-s -w -X main.version=1.4.0", "vcs.revision": "abc"}, "1.4.0+abc"},
		{"quoted release", "", map[string]string{"-ldflags": `"-X" 'main.version=2.0.0-rc1'`}, "2.0.0-rc1"},
		{"module version", "v1.2.3", nil, "v1.2.3"},
		{"nothing recorded", "", nil, "devel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bi := &debug.BuildInfo{Main: debug.Module{Version: tt.main}}
			for k, v := range tt.settings {
				bi.Settings = append(bi.Settings, debug.BuildSetting{Key: k, Value: v})
			}
			ver, commit := buildFrom(bi)
			if commit != "" {
				ver += "+" + commit
			}
			require.Equal(t, tt.want, ver)
		})
	}
	require.NotEmpty(t, Version())
}
