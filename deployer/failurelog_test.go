package deployer

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/txtar"
)

var updateGolden = flag.Bool("update", false, "rewrite the want sections of golden files")

// TestUnhealthyErrorGolden holds the exit-4 error to the files in
// testdata/failurelog: each has the reason, the engine's health log and the
// container's log, and the error as printed (go test -run
// TestUnhealthyErrorGolden -update rewrites it). The lines that look like
// errors come first, probe access-log lines are left out of the tail.
func TestUnhealthyErrorGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/failurelog/*.txtar")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sec := map[string]string{}
			for _, f := range ar.Files {
				sec[f.Name] = string(f.Data)
			}
			e := &UnhealthyError{Container: "shop-api-1", Service: "api", Reason: strings.TrimSpace(sec["reason"]),
				Log: readFailureLog(strings.Split(strings.TrimSuffix(sec["log"], "\n"), "\n"))}
			if h := strings.TrimSpace(sec["health"]); h != "" {
				e.HealthLog = strings.Split(h, "\n")
			}
			got := e.Error() + "\n"
			if *updateGolden {
				for i := range ar.Files {
					if ar.Files[i].Name == "want" {
						ar.Files[i].Data = []byte(got)
					}
				}
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if got != sec["want"] {
				t.Errorf("error text differs from %s (-update rewrites it)\n got:\n%s\nwant:\n%s", file, got, sec["want"])
			}
		})
	}
}

// TestFailureLogUnavailable: logs that cannot be read say why.
func TestFailureLogUnavailable(t *testing.T) {
	e := &UnhealthyError{Container: "c-1", Service: "c", Reason: "exited with code 1", Log: FailureLog{Unavailable: "(logs unavailable: boom)"}}
	want := "deployed but unhealthy: container c-1 (service c) exited with code 1\nlast 20 log lines of c-1: (logs unavailable: boom)"
	if got := e.Error(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// FuzzReadFailureLog: any log (a container writes what it likes) is read
// without a panic into at most failureErrors error lines and failureTail
// tail lines, each from the log.
func FuzzReadFailureLog(f *testing.F) {
	f.Add("{\"level\":\"error\",\"msg\":\"x\"}\nGET /readyz 503\nplain\n")
	f.Add("2026-12-07 18:00:03.201 UTC [35] FATAL:  password authentication failed\n")
	f.Add("time=1 level=warn msg=\"a\"\n{\"time\":3}\n{")
	f.Fuzz(func(t *testing.T, log string) {
		lines := strings.Split(log, "\n")
		fl := readFailureLog(lines)
		if len(fl.Errors) > failureErrors || len(fl.Tail) > failureTail {
			t.Fatalf("%d error lines, %d tail lines", len(fl.Errors), len(fl.Tail))
		}
		for _, l := range fl.Tail {
			if !strings.Contains(log, l) {
				t.Fatalf("tail line %q is not in the log", l)
			}
		}
		_ = (&UnhealthyError{Log: fl}).Error()
	})
}
