package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lae.yaml")
	require.NoError(t, os.WriteFile(file, []byte("nats:\n  urls: [nats://a:4222]\ndetector:\n  batch_size: 8\n  batch_timeout: 5ms\n"), 0o644))
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("detector:\n  batch_sise: 8\n"), 0o644))

	tests := []struct {
		name  string
		path  string
		env   map[string]string
		check func(t *testing.T, c Config)
		err   string
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			require.Equal(t, Default(), c)
		}},
		{name: "file", path: file, check: func(t *testing.T, c Config) {
			require.Equal(t, []string{"nats://a:4222"}, c.NATS.URLs)
			require.Equal(t, 8, c.Detector.BatchSize)
			require.Equal(t, 5*time.Millisecond, c.Detector.BatchTimeout)
			require.Equal(t, 5.0, c.Ingest.SampleFPS, "unset fields keep defaults")
		}},
		{name: "env overrides file", path: file, env: map[string]string{
			"LAE_NATS_URLS": "nats://x:1, nats://y:2", "LAE_DETECTOR_BATCH_SIZE": "32", "LAE_INGEST_SAMPLE_FPS": "0",
			"LAE_AGGREGATOR_THRESHOLD": "0.7", "LAE_SHUTDOWN_TIMEOUT": "1m",
		}, check: func(t *testing.T, c Config) {
			require.Equal(t, []string{"nats://x:1", "nats://y:2"}, c.NATS.URLs)
			require.Equal(t, 32, c.Detector.BatchSize)
			require.Equal(t, 0.0, c.Ingest.SampleFPS)
			require.Equal(t, 0.7, c.Aggregator.Threshold)
			require.Equal(t, time.Minute, c.ShutdownTimeout)
		}},
		{name: "unknown key", path: bad, err: "batch_sise"},
		{name: "missing file", path: filepath.Join(dir, "nope.yaml"), err: "nope.yaml"},
		{name: "bad env", env: map[string]string{"LAE_DETECTOR_BATCH_SIZE": "many"}, err: "LAE_DETECTOR_BATCH_SIZE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, err := Load(tc.path)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			tc.check(t, c)
		})
	}
}

func TestEnvNamesCoverNestedFields(t *testing.T) {
	names := EnvNames()
	require.Contains(t, names, "LAE_NATS_URLS")
	require.Contains(t, names, "LAE_DETECTOR_BATCH_TIMEOUT")
	require.Contains(t, names, "LAE_SHUTDOWN_TIMEOUT")
}

func TestExampleFileIsTheDefaults(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "deploy", "lae.example.yaml"))
	require.NoError(t, err)
	d := Default()
	// The example documents the shipped paths and limits, which Default leaves to the roles.
	d.Detector.Model = c.Detector.Model
	d.Retention = c.Retention
	d.NATS.Creds, d.NATS.NKey = c.NATS.Creds, c.NATS.NKey
	require.Equal(t, d, c)
	require.Equal(t, 1, c.Retention.Replicas)
}

// FuzzLoad feeds arbitrary files to Load: it returns a config or an error, never panics.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("nats:\n  urls: [nats://a:4222]\n"))
	f.Add([]byte("detector: {batch_size: x}"))
	f.Add([]byte("retention:\n  faces_max_age: 3 days\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "fuzz.yaml")
		require.NoError(t, os.WriteFile(p, data, 0o644))
		_, _ = Load(p)
	})
}
