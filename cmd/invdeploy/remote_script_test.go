package main

import (
	"errors"
	"os/exec"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestRemoteScripts runs testdata/remote/*.txtar: the push and remote
// commands' usage, refusals and exit codes, with no network and no engine
// (the invdeploy command comes from TestMain). `exits N PROG ARGS...` runs
// PROG and checks its exit code exactly.
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
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits": func(ts *testscript.TestScript, neg bool, args []string) {
				if neg || len(args) < 2 {
					ts.Fatalf("usage: exits CODE PROGRAM [ARGS...]")
				}
				want, err := strconv.Atoi(args[0])
				if err != nil {
					ts.Fatalf("exits: %q is not an exit code", args[0])
				}
				err = ts.Exec(args[1], args[2:]...)
				got := 0
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					got = ee.ExitCode()
				} else if err != nil {
					ts.Fatalf("exits: %v", err)
				}
				if got != want {
					ts.Fatalf("%s exited %d, want %d", args[1], got, want)
				}
			},
		},
	})
}
