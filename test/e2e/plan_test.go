package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestPlanScripts runs the golden specs of up --dry-run in testdata/plan
// against the real engine, with this checkout's invdeploy (and its proxy
// beside it) on PATH: keep, create, roll, recreate in place, the proxy's
// fate, and that a dry run changes nothing.
func TestPlanScripts(t *testing.T) {
	t.Parallel()
	e := newLocalEnv(t)
	rollappImages(t, e.docker)
	bin := localBinary(t)
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "plan"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
			env.Setenv("XDG_CONFIG_HOME", env.WorkDir+"/xdg")
			env.Setenv("UNIQUE", strconv.Itoa(os.Getpid()))
			env.Setenv("APP_PORT", strconv.Itoa(freePort(t)))
			env.Setenv("OTHER_PORT", strconv.Itoa(freePort(t)))
			if h := os.Getenv("HOME"); h != "" {
				env.Setenv("HOME", h)
			}
			return nil
		},
	})
}
