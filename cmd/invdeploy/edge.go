package main

import (
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/invdeploy/invdeploy/deployer"
)

// edgeFlags are the HTTPS edge's settings on up and remote up. Each has an
// environment variable, used when the flag is not given; none given keeps
// what the engine's edge runs with.
type edgeFlags struct {
	o deployer.EdgeOptions
}

func (f *edgeFlags) bind(cmd *cobra.Command) {
	envInt := func(name string) int {
		n, _ := strconv.Atoi(os.Getenv(name))
		return n
	}
	fl := cmd.Flags()
	fl.IntVar(&f.o.HTTPPort, "edge-http-port", envInt("INVDEPLOY_EDGE_HTTP_PORT"), "host port of the HTTPS edge's plain HTTP listener (redirects, ACME HTTP-01; default 80; env INVDEPLOY_EDGE_HTTP_PORT)")
	fl.IntVar(&f.o.HTTPSPort, "edge-https-port", envInt("INVDEPLOY_EDGE_HTTPS_PORT"), "host port of the HTTPS edge (default 443; env INVDEPLOY_EDGE_HTTPS_PORT)")
	fl.StringVar(&f.o.ACMEDirectory, "acme-directory", os.Getenv("INVDEPLOY_ACME_DIRECTORY"), "ACME directory the edge orders certificates from (default Let's Encrypt; env INVDEPLOY_ACME_DIRECTORY)")
	fl.StringVar(&f.o.ACMECAFile, "acme-ca", os.Getenv("INVDEPLOY_ACME_CA"), "PEM file of a CA the edge trusts for the ACME directory's HTTPS (env INVDEPLOY_ACME_CA)")
	fl.StringVar(&f.o.ACMEEmail, "acme-email", os.Getenv("INVDEPLOY_ACME_EMAIL"), "contact address of the edge's ACME account (env INVDEPLOY_ACME_EMAIL)")
	f.o.Name = edgeName()
}

// edgeName is the edge's container name: INVDEPLOY_EDGE_NAME, else
// invdeploy-edge (tests run edges of their own beside the engine's).
func edgeName() string { return os.Getenv("INVDEPLOY_EDGE_NAME") }

// check refuses ports out of range (exit 2).
func (f *edgeFlags) check() error {
	for name, p := range map[string]int{"--edge-http-port": f.o.HTTPPort, "--edge-https-port": f.o.HTTPSPort} {
		if p < 0 || p > 65535 {
			return usagef("%s %d: want a port from 1 to 65535", name, p)
		}
	}
	if f.o.HTTPPort != 0 && f.o.HTTPPort == f.o.HTTPSPort {
		return usagef("--edge-http-port and --edge-https-port must differ")
	}
	return nil
}
