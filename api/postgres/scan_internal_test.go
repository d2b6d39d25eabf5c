package postgres

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/invdeploy/invdeploy/internal/testpg"
)

// TestPlanScansReplansOnChange: plans cached on a connection are reused only
// for the same column and destination types; anything else is planned anew.
func TestPlanScansReplansOnChange(t *testing.T) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testpg.New(t))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var (
		n    int64
		s    string
		p    *string
		arr  []int64
		text string
	)
	for i := 0; i < 2; i++ { // the second round runs on cached plans
		if err := conn.QueryRow(ctx, `SELECT 41 + $1::int8, 'a', NULL::text, ARRAY[1,2]::int8[]`, i).Scan(planScans{&n, &s, &p, &arr}); err != nil {
			t.Fatal(err)
		}
		if n != int64(41+i) || s != "a" || p != nil || len(arr) != 2 || arr[1] != 2 {
			t.Fatalf("round %d: %d %q %v %v", i, n, s, p, arr)
		}
	}
	if conn.PgConn().CustomData()[scanPlansKey] == nil {
		t.Fatal("plans were not cached on the connection")
	}
	// Same column count, other column types and destinations.
	if err := conn.QueryRow(ctx, `SELECT 'x', 7, 'y'::text, ARRAY['b']`).Scan(planScans{&text, &n, &p, new([]string)}); err != nil {
		t.Fatal(err)
	}
	if text != "x" || n != 7 || p == nil || *p != "y" {
		t.Fatalf("after a type change: %q %d %v", text, n, p)
	}
	// A wrong destination still fails as pgx reports it, naming the column.
	err = conn.QueryRow(ctx, `SELECT 'not a number', 1, NULL::text, ARRAY[1]`).Scan(planScans{&n, &n, &p, &arr})
	if _, ok := err.(pgx.ScanArgError); !ok {
		t.Fatalf("want a ScanArgError, got %T %v", err, err)
	}
}
