package deployer

import (
	"os"
	"testing"
)

// TestMain keeps the tests' state (the delivery-record key) and caches
// (build context digests) out of the user's home: XDG_STATE_HOME and
// XDG_CACHE_HOME are directories of the test run.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "invdeploy-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	os.Setenv("XDG_CACHE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
