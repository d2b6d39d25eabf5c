package deployer

import (
	"errors"
	"fmt"
	"strings"
)

// ErrPreflight is wrapped by every refusal of preflight: nothing was created
// or changed (exit code 3).
var ErrPreflight = errors.New("preflight refused")

// ErrUnhealthy is wrapped when the stack was deployed but a container did not
// become healthy in time (exit code 4).
var ErrUnhealthy = errors.New("deployed but unhealthy")

// ErrNotFound is wrapped when a project or service has nothing deployed.
var ErrNotFound = errors.New("not found")

// Problem is one preflight finding.
type Problem struct {
	// Rule names the check, e.g. "port", "secret", "image", "engine", "file".
	Rule string `json:"rule"`
	// Subject is what the finding is about: "127.0.0.1:8000", "db_password".
	Subject string `json:"subject"`
	// Message says what is wrong and how to fix it. Never holds a secret value.
	Message string `json:"message"`
}

func (p Problem) String() string { return p.Rule + " " + p.Subject + ": " + p.Message }

// PreflightError lists the refusals of one preflight run.
type PreflightError struct {
	Problems []Problem
}

func (e *PreflightError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "preflight refused (nothing was created or changed):")
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrPreflight) true.
func (e *PreflightError) Unwrap() error { return ErrPreflight }

// IsPreflight reports whether err is a preflight refusal.
func IsPreflight(err error) bool { return errors.Is(err, ErrPreflight) }

// IsUnhealthy reports whether err means deployed but unhealthy.
func IsUnhealthy(err error) bool { return errors.Is(err, ErrUnhealthy) }

// ErrInvalid is wrapped when the options of a call cannot be run as given
// (the CLI's usage error, exit code 2): nothing was changed.
var ErrInvalid = errors.New("invalid options")

// InvalidError is a request that cannot be run as given; its message says
// what to give instead.
type InvalidError struct{ Err error }

func (e *InvalidError) Error() string { return e.Err.Error() }

// Unwrap returns the cause.
func (e *InvalidError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

// Invalidf returns an *InvalidError with a formatted message.
func Invalidf(format string, args ...any) error {
	return &InvalidError{Err: fmt.Errorf(format, args...)}
}

// IsInvalid reports whether err is an invalid request.
func IsInvalid(err error) bool { return errors.Is(err, ErrInvalid) }
