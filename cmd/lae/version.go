package main

import (
	"context"
	"fmt"
	"runtime"

	"github.com/lae-screening/lae/detector/model"
	"github.com/lae-screening/lae/internal/config"
	"github.com/lae-screening/lae/internal/ops"
)

// version is the release, set at link time (-ldflags "-X main.version=1.2.3"); builds from a
// checkout report the module version or "devel".
var version = ""

// buildInfo describes this binary: version, commit, Go version.
func buildInfo() (ver, commit, goVersion string) {
	ver, commit = ops.Build()
	if version != "" {
		ver = version
	}
	if commit == "" {
		commit = "unknown"
	}
	return ver, commit, runtime.Version()
}

func versionCmd(_ context.Context, args []string) error {
	cmd := config.Command{Name: "version", Synopsis: "version (also: lae --version)"}
	if _, rest, err := config.Parse(cmd, args); err != nil {
		return err
	} else if len(rest) > 0 {
		return config.Usagef("unexpected arguments %q", rest)
	}
	ver, commit, goVersion := buildInfo()
	fmt.Printf("lae %s (commit %s, %s %s/%s)\n", ver, commit, goVersion, runtime.GOOS, runtime.GOARCH)
	path := model.DefaultPath()
	if info, err := model.ReadCardInfo(model.CardPath(path)); err == nil {
		fmt.Printf("model %s %s (%s, threshold %.3f)\n", info.Name, info.Version, path, info.Threshold)
	} else {
		fmt.Printf("model: shipped model not found (%s)\n", path)
	}
	return nil
}
