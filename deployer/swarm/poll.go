package swarm

import (
	"context"
	"errors"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/sethvargo/go-retry"
)

// errPending is what a poll step returns while what it waits for does not
// hold yet.
var errPending = errors.New("not yet")

// poll runs step every interval until it returns nil, an error other than
// errPending, or timeout passes (then the error is errPending).
func poll(ctx context.Context, timeout, every time.Duration, step func(context.Context) error) error {
	b := retry.WithMaxDuration(timeout, retry.NewConstant(every))
	return retry.Do(ctx, b, func(ctx context.Context) error {
		err := step(ctx)
		if errors.Is(err, errPending) {
			return retry.RetryableError(err)
		}
		return err
	})
}

// removeRetrying removes an object that may still be in use by tasks being
// stopped: the engine answers that with a conflict, forbidden, invalid
// parameter or failed precondition (errdefs classes, never the text), which
// is retried until the deadline. An object already gone counts as removed.
func removeRetrying(ctx context.Context, deadline time.Time, remove func(context.Context) error) error {
	b := retry.WithMaxDuration(max(time.Until(deadline), 0), retry.NewConstant(300*time.Millisecond))
	return retry.Do(ctx, b, func(ctx context.Context) error {
		err := remove(ctx)
		switch {
		case err == nil, cerrdefs.IsNotFound(err):
			return nil
		case cerrdefs.IsConflict(err), cerrdefs.IsPermissionDenied(err), cerrdefs.IsInvalidArgument(err), cerrdefs.IsFailedPrecondition(err):
			return retry.RetryableError(err)
		}
		return err
	})
}
