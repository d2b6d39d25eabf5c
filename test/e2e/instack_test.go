package e2e

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/invdeploy/invdeploy/deployer"
)

// inStackStack is docker/awesome-compose nginx-golang's shape: nginx (its
// service named proxy, as in the sample) in front of a Go backend it
// reaches by the service name. nginx resolves a literal proxy_pass host
// once, when it loads its configuration: the backend's name must keep its
// address through a roll. %s is how the backend is reached: a published
// port, or only an exposed one.
const inStackStack = `services:
  %[1]s:
    image: nginx:1.22
    ports:
      - "127.0.0.1:${WEB_PORT}:80"
    configs:
      - source: nginx_conf
        target: /etc/nginx/conf.d/default.conf
    depends_on:
      %[2]s:
        condition: service_healthy
  %[2]s:
    image: ${APP_IMAGE}
%[3]s
    healthcheck:
      test: ["CMD", "/rollapp", "check"]
      interval: 1s
      timeout: 2s
      retries: 3
    stop_grace_period: 30s
    x-invdeploy:
      health_path: /healthz
configs:
  nginx_conf:
    content: |
      server {
        listen 80;
        location / {
          proxy_pass http://%[2]s:8080;
        }
      }
`

// TestInStackNamesRoll: nginx proxies to a backend by its service name,
// without a resolver (the address is resolved once); the backend rolls to a
// new image under 16 clients going through nginx, with 0 failed requests
// during the roll and after it, once with the backend publishing its port
// and once with the backend only exposing it. The first stack calls nginx
// "proxy" (as awesome-compose does), the second calls the rolled backend
// "proxy": invdeploy's own names collide with neither. The plan says what
// holds the name, the backend's own containers never answer it.
func TestInStackNamesRoll(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, web, backend, reach, rollout string
	}{
		{"published", "proxy", "backend", `    ports:
      - "127.0.0.1:${APP_PORT}:8080"`, "publishes APP_PORT:8080"},
		{"exposed", "web", "proxy", `    expose: ["8080"]`, "reached by name on port 8080"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLocalEnv(t, "nginx:1.22")
			rollappImages(t, e.docker)
			dir := t.TempDir()
			stack := strings.NewReplacer("%[1]s", tc.web, "%[2]s", tc.backend, "%[3]s", tc.reach).Replace(inStackStack)
			if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(stack), 0o644); err != nil {
				t.Fatal(err)
			}
			proj := project(t, "instack-"+tc.name)
			e.cleanup(proj)
			webPort := freePort(t)
			appPort := freePort(t)
			base := "http://127.0.0.1:" + strconv.Itoa(webPort)
			env := func(image string) {
				e.extra = []string{"INVDEPLOY_PROXY_BINARY=" + proxyBinary(t), "WEB_PORT=" + strconv.Itoa(webPort),
					"APP_PORT=" + strconv.Itoa(appPort), "APP_IMAGE=" + image}
			}
			env("rollapp:e2e-v1")
			plan := e.mustRun(dir, "up", "-p", proj, "--dry-run")
			for _, want := range []string{
				"changes:  stateless, " + strings.ReplaceAll(tc.rollout, "APP_PORT", strconv.Itoa(appPort)),
				"rolled behind the rollout proxy, which holds its",
				"proxy:    created (it ",
			} {
				if !strings.Contains(plan.stdout, want) {
					t.Fatalf("the plan lacks %q:\n%s", want, plan.stdout)
				}
			}
			e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "90s")
			if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "1" {
				t.Fatalf("through nginx after the first up: %q, %v", v, err)
			}
			e.assertNames(proj, tc.web, tc.backend)

			load := startLoad(16, func(c *http.Client) error {
				_, err := getOK(c, base+"/")
				return err
			})
			defer func() {
				select {
				case <-load.stop:
				default:
					load.finish()
				}
			}()
			time.Sleep(time.Second)
			env("rollapp:e2e-v2")
			r := e.mustRun(dir, "up", "-p", proj, "--wait-timeout", "90s")
			if !strings.Contains(r.stderr, "Rolling "+proj+"-"+tc.backend+"-1") || !strings.Contains(r.stderr, "switched to") {
				t.Fatalf("the backend did not roll:\n%s", r.stderr)
			}
			if strings.Contains(r.stderr, "Recreating") {
				t.Fatalf("something was recreated:\n%s", r.stderr)
			}
			// After up returned: nginx still reaches the backend by the
			// address it resolved at its start, and it is the new one.
			time.Sleep(2 * time.Second)
			if v, err := getOK(http.DefaultClient, base+"/version"); err != nil || v != "2" {
				t.Fatalf("through nginx after the roll: %q, %v", v, err)
			}
			ok, failed, failures := load.finish()
			t.Logf("load through nginx: %d requests succeeded, %d failed", ok, failed)
			if failed != 0 {
				t.Fatalf("%d requests through nginx failed during and after the roll (of %d); first: %v", failed, ok+failed, failures)
			}
			if ok < 200 {
				t.Fatalf("only %d requests ran: the load generator did not load", ok)
			}
			e.assertNames(proj, tc.web, tc.backend)
		})
	}
}

// assertNames: on the stack network, web's name is web's container's alone,
// the backend's name is its rollout proxy's, and the backend's container
// answers only invdeploy's names.
func (e *localEnv) assertNames(proj, web, backend string) {
	e.t.Helper()
	holders := map[string][]string{} // alias -> containers
	for name, id := range e.containerIDs(proj) {
		ins, err := e.docker.ContainerInspect(context.Background(), id)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, n := range ins.NetworkSettings.Networks {
			for _, a := range n.Aliases {
				holders[a] = append(holders[a], name)
			}
		}
	}
	want := map[string]string{web: proj + "-" + web + "-1", backend: deployer.ProxyName(proj, backend)}
	for alias, holder := range want {
		if !slices.Equal(holders[alias], []string{holder}) {
			e.t.Fatalf("%q is answered by %v, want %s alone (all: %v)", alias, holders[alias], holder, holders)
		}
	}
	if h := holders["invdeploy-backend-"+backend]; !slices.Equal(h, []string{proj + "-" + backend + "-1"}) {
		e.t.Fatalf("invdeploy-backend-%s is answered by %v", backend, h)
	}
}
