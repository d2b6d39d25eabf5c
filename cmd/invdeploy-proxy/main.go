// Command invdeploy-proxy is the reverse proxy that owns a service's published
// port during invdeploy's zero-downtime rollouts (see internal/rollproxy and,
// for its command line, internal/proxycmd).
//
//	invdeploy-proxy run    [--listen :8000] [--metrics :9180] [--admin SOCKET] [--target host:port [--target-delay D]] [RELEASE FLAGS]
//	invdeploy-proxy deploy --target host:port [--health-path /readyz] [--health-timeout 60s] [--drain-timeout 30s] [RELEASE FLAGS]
//	invdeploy-proxy target
//	invdeploy-proxy healthcheck
package main

import (
	"os"

	"github.com/invdeploy/invdeploy/internal/proxycmd"
)

func main() {
	os.Exit(proxycmd.Main(os.Args[1:], os.Stdout, os.Stderr))
}
