package postgres

import (
	"strings"
	"testing"
)

func TestDecodeLines(t *testing.T) {
	lines, err := decodeLines([]string{"a", "b"}, []string{"1.5000", "3.0000"}, []int64{10000, 333},
		[]string{"20.0000", "7.5000"}, []int64{15000, 999}, []int64{3000, 75})
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0].Quantity.String() != "1.5" || lines[1].Quantity.String() != "3" ||
		lines[1].TaxRate.String() != "7.5" || lines[1].UnitAmount != 333 || lines[0].TaxAmount != 3000 || lines[1].Description != "b" {
		t.Fatalf("decoded %+v", lines)
	}
	if lines, err := decodeLines(nil, nil, nil, nil, nil, nil); err != nil || lines == nil || len(lines) != 0 {
		t.Fatalf("no lines (NULL arrays) must decode to an empty, non-nil slice: %#v, %v", lines, err)
	}
	for name, bad := range map[string]func() error{
		"ragged": func() error { _, err := decodeLines([]string{"a"}, nil, nil, nil, nil, nil); return err },
		"quantity": func() error {
			_, err := decodeLines([]string{"a"}, []string{"-1"}, []int64{1}, []string{"0"}, []int64{1}, []int64{0})
			return err
		},
		"rate": func() error {
			_, err := decodeLines([]string{"a"}, []string{"1"}, []int64{1}, []string{"x"}, []int64{1}, []int64{0})
			return err
		},
	} {
		if err := bad(); err == nil || !strings.Contains(err.Error(), map[string]string{"ragged": "lengths", "quantity": "quantity", "rate": "tax rate"}[name]) {
			t.Errorf("%s: error %v", name, err)
		}
	}
}
