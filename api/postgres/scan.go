package postgres

import (
	"fmt"
	"reflect"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// planScans is a pgx.RowScanner that scans a row into its destinations with
// scan plans kept on the connection. pgx plans every column of every
// QueryRow anew (it caches plans only across the rows of one result):
// for an invoice's 26 columns that was a tenth of a GET's CPU. A plan is
// reused only for the same column types, formats and destination types.
type planScans []any

// scanPlansKey names the cached plans in a connection's CustomData.
const scanPlansKey = "invoicing-api.scanPlans"

type cachedPlans struct {
	oids    []uint32
	formats []int16
	types   []reflect.Type
	plans   []pgtype.ScanPlan
}

func (c *cachedPlans) fits(fds []pgconn.FieldDescription, dest []any) bool {
	if c == nil || len(c.plans) != len(dest) {
		return false
	}
	for i, fd := range fds {
		if c.oids[i] != fd.DataTypeOID || c.formats[i] != fd.Format || c.types[i] != reflect.TypeOf(dest[i]) {
			return false
		}
	}
	return true
}

// ScanRow implements pgx.RowScanner.
func (dest planScans) ScanRow(rows pgx.Rows) error {
	fds := rows.FieldDescriptions()
	values := rows.RawValues()
	if len(fds) != len(dest) || len(values) != len(dest) {
		return fmt.Errorf("scan: %d columns into %d destinations", len(fds), len(dest))
	}
	var (
		cache   map[string]any
		typeMap *pgtype.Map
	)
	if conn := rows.Conn(); conn != nil {
		cache, typeMap = conn.PgConn().CustomData(), conn.TypeMap()
	} else {
		typeMap = pgtype.NewMap()
	}
	c, _ := cache[scanPlansKey].(*cachedPlans)
	if !c.fits(fds, dest) {
		c = &cachedPlans{}
		for i, fd := range fds {
			c.oids = append(c.oids, fd.DataTypeOID)
			c.formats = append(c.formats, fd.Format)
			c.types = append(c.types, reflect.TypeOf(dest[i]))
			c.plans = append(c.plans, typeMap.PlanScan(fd.DataTypeOID, fd.Format, dest[i]))
		}
		if cache != nil {
			cache[scanPlansKey] = c
		}
	}
	for i, d := range dest {
		if err := c.plans[i].Scan(values[i], d); err != nil {
			return pgx.ScanArgError{ColumnIndex: i, FieldName: fds[i].Name, Err: err}
		}
	}
	return nil
}
