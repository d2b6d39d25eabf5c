package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// completionEngine is an Engine API endpoint with two projects' containers
// and two releases of project shop, for the completions that ask the engine.
func completionEngine(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("API-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		filters := r.URL.Query().Get("filters")
		switch {
		case r.URL.Path == "/_ping":
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/version"):
			w.Write([]byte(`{"Version":"20.10.24","ApiVersion":"1.41","MinAPIVersion":"1.12"}`))
		case strings.HasSuffix(r.URL.Path, "/containers/json"):
			var cs []map[string]any
			for _, p := range []string{"shop", "billing", "shop"} {
				cs = append(cs, map[string]any{"Id": p, "Names": []string{"/" + p + "-web-1"}, "Labels": map[string]string{"com.docker.compose.project": p}})
			}
			json.NewEncoder(w).Encode(cs)
		case strings.HasSuffix(r.URL.Path, "/volumes") && strings.Contains(filters, "io.invdeploy.release.project=shop"):
			var vs []map[string]any
			for n, who := range map[int]string{1: "alice", 2: "bob"} {
				info, _ := json.Marshal(map[string]any{"number": n, "project": "shop", "user": who, "machine": "laptop", "command": "up", "created": time.Date(2026, 12, 7, 10, n, 0, 0, time.UTC)})
				vs = append(vs, map[string]any{"Name": "r" + string(rune('0'+n)), "Labels": map[string]string{"io.invdeploy.release.project": "shop", "io.invdeploy.release.info": string(info)}})
			}
			json.NewEncoder(w).Encode(map[string]any{"Volumes": vs})
		default:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"not implemented by the test engine"}`))
		}
	}))
	t.Cleanup(srv.Close)
	return "tcp://" + srv.Listener.Addr().String()
}

// complete runs cobra's __complete command in-process, as a shell does, and
// returns the offered values (descriptions cut) and the directive line.
func complete(t *testing.T, args ...string) ([]string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Main(append([]string{"__complete"}, args...), strings.NewReader(""), &out, &errb); code != 0 {
		t.Fatalf("__complete %v: exit %d\n%s", args, code, errb.String())
	}
	var values []string
	directive := ""
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if strings.HasPrefix(l, ":") {
			directive = l
			continue
		}
		v, _, _ := strings.Cut(l, "\t")
		values = append(values, v)
	}
	return values, directive
}

// TestCompletion: each dynamic completion offers what the stack or the
// engine has: services (logs), profiles (--profile), secrets (secret rotate
// and show), projects (-p), releases (rollback --to) and flag values (-o,
// --via, -f).
func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "shop.yaml"), []byte(`name: shop
services:
  web:
    image: nginx
  db:
    image: postgres:15
    environment:
      POSTGRES_PASSWORD_FILE: /run/secrets/db_pw
    secrets: [db_pw]
  grafana:
    image: grafana/grafana
    profiles: [dashboards]
    secrets: [admin_pw]
  prometheus:
    image: prom/prometheus
    profiles: [monitoring, dashboards]
secrets:
  db_pw:
    environment: SHOP_DB_PW
    x-invdeploy-generate: true
  admin_pw:
    environment: SHOP_ADMIN_PW
    x-invdeploy-generate: true
  tls_key:
    file: ./key.pem
`), 0o644)
	f := filepath.Join(dir, "shop.yaml")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("DOCKER_HOST", completionEngine(t))
	t.Chdir(t.TempDir()) // the working directory has no compose file: the bundled stack

	for _, tc := range []struct {
		name      string
		args      []string
		want      string
		directive string
	}{
		{"services", []string{"logs", "--file", f, ""}, "db grafana prometheus web", ":4"},
		{"services not given yet", []string{"logs", "--file", f, "web", ""}, "db grafana prometheus", ":4"},
		{"remote services", []string{"remote", "logs", "--host", "ssh://h", "--file", f, ""}, "db grafana prometheus web", ":4"},
		{"profiles", []string{"up", "-f", f, "--profile", ""}, "dashboards monitoring", ":4"},
		{"profiles of the bundled stack", []string{"up", "--profile", ""}, "dashboards monitoring", ":4"},
		{"secrets to rotate", []string{"secret", "rotate", "-f", f, ""}, "db_pw", ":4"},
		{"secrets to show", []string{"secret", "show", "-f", f, ""}, "admin_pw db_pw", ":4"},
		{"projects", []string{"status", "-p", ""}, "billing invoicing shop", ":4"},
		{"releases", []string{"rollback", "-p", "shop", "--to", ""}, "2 1", ":36"},
		{"output", []string{"status", "-o", ""}, "text json", ":4"},
		{"via", []string{"remote", "up", "--via", ""}, "ssh registry", ":4"},
		{"compose files", []string{"up", "-f", ""}, "yaml yml json", ":8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, directive := complete(t, tc.args...)
			if strings.Join(got, " ") != tc.want || directive != tc.directive {
				t.Errorf("__complete %s\n got %q %s\nwant %q %s", strings.Join(tc.args, " "), strings.Join(got, " "), directive, tc.want, tc.directive)
			}
		})
	}
}
