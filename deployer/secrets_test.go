package deployer

import (
	"context"
	"testing"
)

func TestResolveUser(t *testing.T) {
	f := newFakeEngine()
	d := New(f, nil)
	for spec, want := range map[string][2]int{
		"": {0, 0}, "root": {0, 0}, "postgres": {999, 999}, "65532:65532": {65532, 65532}, "65532": {65532, 65532},
		"1234": {1234, 0}, "1234:5": {1234, 5}, "postgres:nonroot": {999, 65532},
	} {
		uid, gid, err := d.resolveUser(context.Background(), "c1", spec)
		if err != nil || uid != want[0] || gid != want[1] {
			t.Errorf("resolveUser(%q) = %d:%d, %v; want %d:%d", spec, uid, gid, err, want[0], want[1])
		}
	}
	for _, bad := range []string{"nobody-here", "postgres:nogroup"} {
		if _, _, err := d.resolveUser(context.Background(), "c1", bad); err == nil {
			t.Errorf("resolveUser(%q): want an error", bad)
		}
	}
}
