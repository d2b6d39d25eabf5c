package main

import (
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestRemoteScripts runs testdata/remote/*.txtar: the push and remote
// commands' usage, refusals and exit codes, with no network and no engine
// (the invdeploy command comes from TestMain), with the commands of
// scriptCmds.
func TestRemoteScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/remote",
		Setup: func(env *testscript.Env) error {
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("DOCKER_HOST", "")
			env.Setenv("SSH_AUTH_SOCK", "")
			env.Setenv("DOCKER_CERT_PATH", "")
			return nil
		},
		Cmds: scriptCmds,
	})
}
