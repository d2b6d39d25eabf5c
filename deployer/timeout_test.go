package deployer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
)

// blockingEngine never answers ContainerList until its context ends.
type blockingEngine struct{ *fakeEngine }

func (blockingEngine) ContainerList(ctx context.Context, _ container.ListOptions) ([]container.Summary, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func TestWithCallTimeout(t *testing.T) {
	e := WithCallTimeout(blockingEngine{newFakeEngine()}, 50*time.Millisecond, "ssh://admin@203.0.113.7")
	_, err := e.ContainerList(context.Background(), container.ListOptions{})
	var te *CallTimeoutError
	if !errors.As(err, &te) {
		t.Fatalf("want a *CallTimeoutError, got %v", err)
	}
	if !strings.Contains(err.Error(), "engine ssh://admin@203.0.113.7 did not answer list containers within 50ms") {
		t.Fatalf("message: %v", err)
	}

	// The caller's own cancellation stays a cancellation (exit 130), not a timeout.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = e.ContainerList(ctx, container.ListOptions{})
	if errors.As(err, &te) || !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled call: %v", err)
	}

	// Quick answers pass through; 0 disables the bound.
	f := newFakeEngine()
	if _, err := WithCallTimeout(f, time.Second, "").Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	if WithCallTimeout(f, 0, "") != Engine(f) {
		t.Fatal("a zero timeout should leave the engine as is")
	}
}
