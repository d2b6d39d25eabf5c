package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"invdeploy": func() { os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) },
	})
}

// scriptCmds are the commands the testscripts add to testscript's own:
// `exitcode N PROG ARGS...` runs PROG and asserts its exit code is N.
var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"exitcode": func(ts *testscript.TestScript, neg bool, args []string) {
		if len(args) < 2 {
			ts.Fatalf("usage: exitcode N prog [args...]")
		}
		want, err := strconv.Atoi(args[0])
		if err != nil {
			ts.Fatalf("exitcode: %v", err)
		}
		got := 0
		if err := ts.Exec(args[1], args[2:]...); err != nil {
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				ts.Fatalf("exitcode: %v", err)
			}
			got = ee.ExitCode()
		}
		if (got == want) == neg {
			ts.Fatalf("%s exited %d, want %d", args[1], got, want)
		}
	},
}

// fakeEngines starts two Engine API endpoints for the scripts: ok answers
// ping and version as Docker 20.10 does, lists no containers, networks or
// volumes, and has one image, nginx:present (404 for the rest); hung accepts connections and requests and never answers. They
// are tcp:// addresses on loopback, which the local commands accept.
func fakeEngines(t *testing.T) (ok, hung string) {
	t.Helper()
	okSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/_ping":
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/version"):
			w.Write([]byte(`{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}`))
		case strings.HasSuffix(r.URL.Path, "/containers/json"), strings.HasSuffix(r.URL.Path, "/networks"), strings.HasSuffix(r.URL.Path, "/volumes"):
			if strings.HasSuffix(r.URL.Path, "/volumes") {
				w.Write([]byte(`{"Volumes":[]}`))
				return
			}
			w.Write([]byte(`[]`))
		case strings.HasSuffix(r.URL.Path, "/images/nginx:present/json"):
			// One image is present, so a stack of it passes preflight.
			w.Write([]byte(`{"Id":"sha256:0123","RepoTags":["nginx:present"],"Config":{}}`))
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"not implemented by the test engine"}`))
		}
	}))
	release := make(chan struct{})
	hungSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() {
		close(release)
		hungSrv.Close()
		okSrv.Close()
	})
	return "tcp://" + okSrv.Listener.Addr().String(), "tcp://" + hungSrv.Listener.Addr().String()
}

// TestScripts runs the CLI behaviour specs in testdata/script: help, usage
// errors, exit codes and messages. They need no Docker engine: $FAKE_ENGINE
// and $HUNG_ENGINE are the test endpoints of fakeEngines.
func TestScripts(t *testing.T) {
	ok, hung := fakeEngines(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("FAKE_ENGINE", ok)
			env.Setenv("HUNG_ENGINE", hung)
			return nil
		},
		Cmds: scriptCmds,
	})
}
