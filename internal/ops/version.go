package ops

import (
	"runtime/debug"
	"strings"
)

// Version names this binary's build for lae_build_info: the release set at link time
// (-ldflags "-X main.version=1.2.3"), else the module version, else "devel", followed by
// "+" and the commit (12 hex digits, "-dirty" for a modified checkout) when the build
// recorded one. It reads the same build information `lae --version` prints.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return versionFrom(bi)
}

func versionFrom(bi *debug.BuildInfo) string {
	ver, commit, modified := "", "", false
	for _, s := range bi.Settings {
		switch s.Key {
		case "-ldflags":
			// The release is a link-time string in package main, which this package cannot
			// read; the linker flags that set it are recorded in the build information.
			for _, f := range strings.Fields(s.Value) {
				if v, ok := strings.CutPrefix(strings.Trim(f, `'"`), "main.version="); ok {
					ver = v
				}
			}
		case "vcs.revision":
			commit = s.Value
			if len(commit) > 12 {
				commit = commit[:12]
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if ver == "" {
		ver = bi.Main.Version
	}
	if ver == "" || ver == "(devel)" {
		ver = "devel"
	}
	if commit == "" {
		return ver
	}
	if modified {
		commit += "-dirty"
	}
	return ver + "+" + commit
}
