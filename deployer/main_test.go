package deployer

import (
	"os"
	"testing"
)

// TestMain keeps the tests' state (the delivery-record key) out of the
// user's home: XDG_STATE_HOME is a directory of the test run.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "invdeploy-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_STATE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
