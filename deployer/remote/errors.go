package remote

import (
	"errors"
	"fmt"
)

// Step names the stage of connecting to a remote engine that failed, so an
// error tells the user where to look.
type Step string

// The steps of connecting, in the order they happen.
const (
	StepParse      Step = "host URL"
	StepResolve    Step = "name resolution"
	StepTCP        Step = "TCP connect"
	StepHostKey    Step = "host key verification"
	StepHandshake  Step = "SSH handshake"
	StepAuth       Step = "SSH authentication"
	StepSocket     Step = "Docker socket"
	StepTLS        Step = "TLS setup"
	StepCredential Step = "SSH credentials"
)

// ConnectError is a failure to reach a remote engine. Step says which stage
// failed; Hint, when set, says what to do about it.
type ConnectError struct {
	Step Step
	Host string // host[:port] or the URL being connected to
	Hint string
	Err  error
}

func (e *ConnectError) Error() string {
	msg := fmt.Sprintf("connect to %s: %s failed", e.Host, e.Step)
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if e.Hint != "" {
		msg += "\n  " + e.Hint
	}
	return msg
}

func (e *ConnectError) Unwrap() error { return e.Err }

// FailedStep returns the step of a *ConnectError in err's chain, or "" when err
// is not a connection failure.
func FailedStep(err error) Step {
	var ce *ConnectError
	if errors.As(err, &ce) {
		return ce.Step
	}
	return ""
}
