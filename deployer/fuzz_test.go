package deployer

import (
	"context"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/invdeploy/invdeploy/stacks"
)

// FuzzLoadAndConvert feeds compose input through loading, the
// unsupported-field check, hashing, planning and conversion: none may panic,
// and our own errors name the compose field they are about.
func FuzzLoadAndConvert(f *testing.F) {
	f.Add(stacks.Invoicing)
	f.Add([]byte("services:\n  app:\n    build: .\n    ports: [\"8000:8000\"]\n    depends_on: [db]\n  db:\n    image: postgres:15\n    environment:\n      POSTGRES_PASSWORD: password\n"))
	f.Add([]byte("services:\n  w:\n    image: x\n    restart: on-failure:x\n"))
	f.Add([]byte("services:\n  w:\n    image: x\n    secrets: [{source: s, target: /etc/s}]\nsecrets:\n  s: {file: ./s}\n"))
	f.Add([]byte("services:\n  w:\n    image: x\n    ports: [\"1000-1002:80\"]\n    volumes: [\"v:/v\", \"/a:/b:ro\"]\n    tmpfs: [\"/t:size=1m\"]\n    deploy: {restart_policy: {condition: bogus}}\nvolumes: {v: {}}\n"))
	f.Add([]byte("services:\n  w:\n    image: x\n    network_mode: service:db\n  db: {image: y}\n"))
	f.Add([]byte("services:\n  a: {image: x, depends_on: [b]}\n  b: {image: x, depends_on: [a]}\n"))
	f.Add([]byte("services:\n  w:\n    image: x\n    healthcheck: {test: [\"CMD\", \"true\"], interval: 1s, retries: 3}\n    ulimits: {nofile: {soft: 1, hard: 2}, nproc: 5}\n    scale: 3\n"))
	f.Add([]byte("services:\n  w:\n    image: x\n    ports: [\"8080:80\"]\n    x-invdeploy: {rollout: proxy, health_path: /up, drain_timeout: 5s}\n"))
	f.Add([]byte("services:\n  w:\n    image: x\n    ports: [\"8080:80\"]\n    volumes: [\"v:/v\"]\n    x-invdeploy: {rollout: proxy, drain_timeout: 99h}\nvolumes: {v: {}}\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, content []byte) {
		ctx := context.Background()
		p, err := loadContent(ctx, content, dir, types.Mapping{}, "fuzz", func(o *loader.Options) { o.SkipResolveEnvironment = true })
		if err != nil {
			return // compose-go's own validation
		}
		st, err := newStack(p, false, "fuzz")
		if err != nil {
			if !strings.Contains(err.Error(), "services.") && !strings.Contains(err.Error(), "secrets.") {
				t.Fatalf("error does not name the field: %v", err)
			}
			return
		}
		_ = st.Warnings
		if _, err := dependencyOrder(p); err != nil && !strings.Contains(err.Error(), "services") {
			t.Fatalf("dependency error does not name the field: %v", err)
		}
		for _, name := range p.ServiceNames() {
			s := p.Services[name]
			h, err := ConfigHash(s)
			if err != nil {
				t.Fatalf("hash %s: %v", name, err)
			}
			ro, err := rolloutOf(s, true)
			if err != nil && !strings.Contains(err.Error(), "services."+name) {
				t.Fatalf("rollout error does not name services.%s: %v", name, err)
			}
			planContainers(p, s, h, imageState{id: "img"}, nil, ro, nil)
			if ro.Proxy {
				if _, err := proxySpec(p, s, ro, "proxy:1"); err != nil && !strings.Contains(err.Error(), "services."+name) {
					t.Fatalf("proxy error does not name services.%s: %v", name, err)
				}
			}
			if _, err := convert(p, s, 1, h); err != nil && !strings.Contains(err.Error(), "services."+name) {
				t.Fatalf("convert error does not name services.%s: %v", name, err)
			}
		}
	})
}
