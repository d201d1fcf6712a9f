package ops

import (
	"runtime/debug"
	"strings"
)

// Version names this binary's build for lae_build_info: Build's release followed by "+" and
// its commit when the build recorded one (what `lae --version` prints, on one line).
func Version() string {
	ver, commit := Build()
	if commit == "" {
		return ver
	}
	return ver + "+" + commit
}

// Build is this binary's release and commit: the release set at link time
// (-ldflags "-X main.version=1.2.3"), else the module version, else "devel"; the commit's
// first 12 hex digits, with "-dirty" for a modified checkout, or "" when none was recorded.
func Build() (release, commit string) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel", ""
	}
	return buildFrom(bi)
}

func buildFrom(bi *debug.BuildInfo) (ver, commit string) {
	modified := false
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
	if commit != "" && modified {
		commit += "-dirty"
	}
	return ver, commit
}
