// Package version holds the build identity of both programs. make build sets
// it at link time with -ldflags "-X github.com/invdeploy/invdeploy/internal/version.Version=..."
// (builds stay reproducible: no embedded build time); a binary built without
// those flags (go install, go build) takes it from the build information the
// go command embeds: the module version and the VCS revision.
package version

import (
	"runtime/debug"
	"strings"
)

// Version is the release version, "dev" when neither the linker flags nor
// the build information give one.
var Version = "dev"

// Revision is the git commit the binary was built from, "unknown" when
// neither the linker flags nor the build information give one.
var Revision = "unknown"

func init() {
	if info, ok := debug.ReadBuildInfo(); ok {
		Version, Revision = fromBuildInfo(info, Version, Revision)
	}
}

// fromBuildInfo fills what the linker flags left at their defaults ("dev",
// "unknown") from info: the main module's version (v1.2.0 for `go install
// ...@v1.2.0`, a pseudo-version for a build in a clone) and vcs.revision
// (12 characters, "-dirty" when vcs.modified). Values set by -ldflags win.
func fromBuildInfo(info *debug.BuildInfo, version, revision string) (string, string) {
	if version == "dev" && info.Main.Version != "" && info.Main.Version != "(devel)" {
		version = info.Main.Version
	}
	if revision == "unknown" {
		var rev string
		var modified bool
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" {
			if len(rev) > 12 {
				rev = rev[:12]
			}
			if modified {
				rev += "-dirty"
			}
			revision = rev
		} else if i := strings.LastIndexByte(version, '-'); i > 0 && isPseudoRevision(version[i+1:]) {
			// A pseudo-version (v0.0.0-20261207175100-abcdef123456) names
			// its commit; a module fetched by version has no vcs settings.
			revision = strings.TrimSuffix(version[i+1:], "+dirty")
		}
	}
	return version, revision
}

// isPseudoRevision reports whether s is the commit part of a
// pseudo-version: 12 lower-case hex digits, maybe followed by "+dirty".
func isPseudoRevision(s string) bool {
	s = strings.TrimSuffix(s, "+dirty")
	if len(s) != 12 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

// String returns "Version (Revision)".
func String() string { return Version + " (" + Revision + ")" }
