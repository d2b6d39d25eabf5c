// Command invdeploy builds, checks and runs the Invoicing API stack (or any
// compose file) through the Docker Engine API. main is wiring only: every
// error flows back to Main, which maps it to one exit code.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/invdeploy/invdeploy/deployer"
	"github.com/invdeploy/invdeploy/internal/proxycmd"
)

// Exit codes of the CLI contract (shared/DESIGN.md).
const (
	exitOK        = 0
	exitFailure   = 1
	exitUsage     = 2
	exitPreflight = 3
	exitUnhealthy = 4
	exitLocked    = 5
	exitCancelled = 130
)

func main() {
	// Started as invdeploy-proxy (the proxy image made from this binary
	// when no invdeploy-proxy is installed beside it), it is the proxy.
	if filepath.Base(os.Args[0]) == proxyName {
		os.Exit(proxycmd.Main(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// Main runs invdeploy with args and returns the exit code. SIGINT and SIGTERM
// cancel the context of the running command.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globalOptions{stdin: stdin, stdout: stdout, stderr: stderr, argv0: os.Args[0]}
	root := newRootCommand(g)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := exitCode(ctx, err)
	if err != nil {
		fmt.Fprintf(stderr, "invdeploy: %v\n", err)
		if code == exitUsage {
			fmt.Fprintf(stderr, "Run '%s' for usage.\n", g.commandLine("--help"))
		}
	}
	return code
}

// usageError marks a command line that cannot be run as given.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitCode is the one mapping from errors to exit codes.
func exitCode(ctx context.Context, err error) int {
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue), isCobraUsage(err), deployer.IsInvalid(err):
		return exitUsage
	case deployer.IsPreflight(err):
		return exitPreflight
	case deployer.IsUnhealthy(err):
		return exitUnhealthy
	case deployer.IsLocked(err):
		return exitLocked
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return exitCancelled
	default:
		return exitFailure
	}
}

// isCobraUsage recognises the errors cobra returns for an unknown command or
// flag (it has no typed errors for them).
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "required flag", "accepts ", "requires at least", "requires at most"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}
