package version

import (
	"runtime/debug"
	"testing"
)

// TestFromBuildInfo: a binary built without -ldflags takes its version and
// revision from the build information; -ldflags values win.
func TestFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	for _, tc := range []struct {
		name             string
		main             string
		settings         []debug.BuildSetting
		ldVersion, ldRev string
		wantVer, wantRev string
	}{
		{"go install @version", "v1.4.0", nil, "dev", "unknown", "v1.4.0", "unknown"},
		{"go install @commit", "v0.0.0-20261207175100-abcdef123456", nil, "dev", "unknown", "v0.0.0-20261207175100-abcdef123456", "abcdef123456"},
		{"build in a clean clone", "v0.0.0-20261207175100-0123456789ab", vcs(rev, "false"), "dev", "unknown", "v0.0.0-20261207175100-0123456789ab", "0123456789ab"},
		{"build in a modified clone", "v0.0.0-20261207175100-0123456789ab+dirty", vcs(rev, "true"), "dev", "unknown", "v0.0.0-20261207175100-0123456789ab+dirty", "0123456789ab-dirty"},
		{"no module version, vcs", "(devel)", vcs(rev, "false"), "dev", "unknown", "dev", "0123456789ab"},
		{"nothing known", "(devel)", nil, "dev", "unknown", "dev", "unknown"},
		{"ldflags win", "v1.4.0", vcs(rev, "true"), "v2.0.0", "fedcba987654", "v2.0.0", "fedcba987654"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/invdeploy/invdeploy", Version: tc.main}, Settings: tc.settings}
			v, r := fromBuildInfo(info, tc.ldVersion, tc.ldRev)
			if v != tc.wantVer || r != tc.wantRev {
				t.Errorf("fromBuildInfo = %q, %q; want %q, %q", v, r, tc.wantVer, tc.wantRev)
			}
		})
	}
}
