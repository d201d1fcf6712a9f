package config

import (
	"flag"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/lae-screening/lae/internal/testenv"
)

// shipped is the repository's model, so that Validate's file checks pass by default.
func shipped(t *testing.T) Config {
	c := ForCommand("scan")
	c.Detector.Model = testenv.ShippedModel(t)
	return c
}

func TestValidate(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()

	cases := []struct {
		name  string
		roles Roles
		mod   func(c *Config)
		err   string // "" = valid; else the flag the one-line error must name
	}{
		{"defaults", AllRoles, func(*Config) {}, ""},
		{"bad rule", AllRoles, func(c *Config) { c.Aggregator.Rule = "bogus" }, "--rule bogus"},
		{"threshold above 1", AllRoles, func(c *Config) { c.Aggregator.Threshold = 1.5 }, "--threshold 1.5"},
		{"negative threshold", AllRoles, func(c *Config) { c.Aggregator.Threshold = -1 }, "--threshold -1"},
		{"explicit threshold", AllRoles, func(c *Config) { c.Aggregator.Threshold = 0.5 }, ""},
		{"negative topk", AllRoles, func(c *Config) { c.Aggregator.TopK = -5 }, "--topk -5"},
		{"negative fps", AllRoles, func(c *Config) { c.Ingest.SampleFPS = -2 }, "--fps -2"},
		{"every frame", AllRoles, func(c *Config) { c.Ingest.SampleFPS = 0 }, ""},
		{"provider", AllRoles, func(c *Config) { c.Detector.Provider = "gpu" }, "--provider gpu"},
		{"batch", AllRoles, func(c *Config) { c.Detector.BatchSize = -1 }, "--batch-size -1"},
		{"missing model", AllRoles, func(c *Config) { c.Detector.Model = filepath.Join(dir, "nope.onnx") }, "--model"},
		{"model is a directory", AllRoles, func(c *Config) { c.Detector.Model = dir }, "is a directory"},
		{"face model", AllRoles, func(c *Config) { c.Ingest.FaceModel = "dlib" }, "--face-model dlib"},
		{"min eye", AllRoles, func(c *Config) { c.Ingest.MinEyePx = -1 }, "--min-eye-px"},
		{"busy nats port", AllRoles, func(c *Config) { c.NATS.ListenPort = busyPort }, "--nats-port"},
		{"nats port range", AllRoles, func(c *Config) { c.NATS.ListenPort = 70000 }, "--nats-port 70000"},
		{"free nats port", AllRoles, func(c *Config) { c.NATS.ListenPort = -1 }, ""},
		{"busy http", AllRoles, func(c *Config) { c.HTTP.Addr = "127.0.0.1:" + strconv.Itoa(busyPort) }, "--http"},
		{"http no port", AllRoles, func(c *Config) { c.HTTP.Addr = "localhost" }, "--http"},
		{"log level", AllRoles, func(c *Config) { c.Log.Level = "loud" }, "--log-level"},
		{"rolling", AllRoles, func(c *Config) { c.Aggregator.RollingEvery = -1 }, "--rolling"},
		{"shutdown", AllRoles, func(c *Config) { c.ShutdownTimeout = 0 }, "--shutdown-timeout"},
		// A role checks only what it uses.
		{"ingest ignores the model", Roles{Ingest: true}, func(c *Config) { c.Detector.Model = filepath.Join(dir, "nope.onnx") }, ""},
		{"aggregator needs the card", Roles{Aggregate: true}, func(c *Config) { c.Detector.Model = filepath.Join(dir, "nope.onnx") }, "card"},
		{"aggregator with a threshold needs no card", Roles{Aggregate: true}, func(c *Config) {
			c.Detector.Model, c.Aggregator.Threshold = filepath.Join(dir, "nope.onnx"), 0.7
		}, ""},
		{"external needs urls", Roles{Detect: true}, func(c *Config) { c.NATS.URLs = nil }, "--nats"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := shipped(t)
			tc.mod(&c)
			err := c.Validate(tc.roles)
			if tc.err == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.err)
			require.ErrorAs(t, err, new(UsageError))
			require.NotContains(t, err.Error(), "\n", "one line")
		})
	}
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "lae.yaml")
	require.NoError(t, os.WriteFile(file, []byte("ingest: {sample_fps: 2}\naggregator: {topk: 4}\n"), 0o644))
	var jsonOut bool
	cmd := Command{Name: "scan", Synopsis: "scan [flags] <input>...", Bind: func(fs *flag.FlagSet, c *Config) {
		StackFlags(fs, c)
		fs.BoolVar(&jsonOut, "json", false, "JSON output")
	}}
	cases := []struct {
		name    string
		args    []string
		env     map[string]string
		pos     []string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{name: "flags after arguments", args: []string{"a.mp4", "--fps", "3", "b.mp4", "--json"}, pos: []string{"a.mp4", "b.mp4"},
			check: func(t *testing.T, c Config) { require.Equal(t, 3.0, c.Ingest.SampleFPS); require.True(t, jsonOut) }},
		{name: "double dash ends flags", args: []string{"--", "--fps", "-"}, pos: []string{"--fps", "-"}},
		{name: "stdin is an argument", args: []string{"-", "--topk=2"}, pos: []string{"-"},
			check: func(t *testing.T, c Config) { require.Equal(t, 2, c.Aggregator.TopK) }},
		{name: "file, env, flag in order", args: []string{"--config", file, "x", "--rule", "mean"}, env: map[string]string{"LAE_AGGREGATOR_TOPK": "9"},
			pos: []string{"x"}, check: func(t *testing.T, c Config) {
				require.Equal(t, 2.0, c.Ingest.SampleFPS, "from the file")
				require.Equal(t, 9, c.Aggregator.TopK, "env over the file")
				require.Equal(t, "mean", c.Aggregator.Rule, "flag")
			}},
		{name: "flag over env", args: []string{"--topk", "1"}, env: map[string]string{"LAE_AGGREGATOR_TOPK": "9"},
			check: func(t *testing.T, c Config) { require.Equal(t, 1, c.Aggregator.TopK) }},
		{name: "config from env", env: map[string]string{"LAE_CONFIG": file},
			check: func(t *testing.T, c Config) { require.Equal(t, 2.0, c.Ingest.SampleFPS) }},
		{name: "unknown flag", args: []string{"--bogus"}, wantErr: "bogus"},
		{name: "bad value", args: []string{"--fps", "fast"}, wantErr: "fps"},
		{name: "missing config", args: []string{"--config=" + filepath.Join(dir, "none.yaml")}, wantErr: "none.yaml"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			jsonOut = false
			t.Setenv("LAE_CONFIG", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			c, pos, err := Parse(cmd, tc.args)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.ErrorAs(t, err, new(UsageError))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.pos, pos)
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

// TestUsageShowsEveryDefault: --help lists every flag with its default, zero values included.
func TestUsageShowsEveryDefault(t *testing.T) {
	c := ForCommand("serve")
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	StackFlags(fs, &c)
	ServeFlags(fs, &c)
	var b strings.Builder
	PrintUsage(&b, Command{Synopsis: "serve [flags]"}, fs)
	out := b.String()
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		require.Contains(t, out, "--"+f.Name)
	})
	require.Equal(t, n, strings.Count(out, "(default "), "every flag shows its default")
	require.Contains(t, out, "--nats-port int\n")
	require.Contains(t, out, "(default 4222)")
	require.Contains(t, out, "(default 0)", "zero defaults are shown too")
}
