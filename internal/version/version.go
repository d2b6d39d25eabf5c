// Package version holds the build identity of both programs, set at link time
// with -ldflags "-X github.com/invdeploy/invdeploy/internal/version.Version=..."
// so builds stay reproducible (no embedded build time).
package version

// Version is the release version, "dev" for untagged builds.
var Version = "dev"

// Revision is the git commit the binary was built from, "unknown" when not set.
var Revision = "unknown"

// String returns "Version (Revision)".
func String() string { return Version + " (" + Revision + ")" }
