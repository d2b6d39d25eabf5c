package api

import (
	"errors"
	"math/big"
	"testing"

	"pgregory.net/rapid"
)

func TestLineAmountTable(t *testing.T) {
	for _, tc := range []struct {
		qty  string
		unit int64
		want int64
	}{
		{"1", 999, 999},
		{"1.5", 999, 1499},  // 1498.5 rounds half up
		{"2.5", 1, 3},       // 2.5 -> 3
		{"0.3333", 3, 1},    // 0.9999 -> 1
		{"0.0001", 4999, 0}, // 0.4999 -> 0
		{"0.0001", 5000, 1}, // 0.5 -> 1
		{"3", 0, 0},
		{"12.3456", 10000, 123456},
		{"1", MaxAmount, MaxAmount},
	} {
		got, err := LineAmount(MustDecimal(tc.qty), tc.unit)
		if err != nil || got != tc.want {
			t.Errorf("LineAmount(%s, %d) = %d, %v; want %d", tc.qty, tc.unit, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		qty  string
		unit int64
	}{{"1.0001", MaxAmount}, {"2", MaxAmount/2 + 1}, {"99999999999999.9999", MaxAmount}} {
		if _, err := LineAmount(MustDecimal(tc.qty), tc.unit); !errors.Is(err, ErrOverflow) {
			t.Errorf("LineAmount(%s, %d): err %v, want overflow", tc.qty, tc.unit, err)
		}
	}
}

func line(qty string, unit int64, rate string) LineItem {
	return LineItem{Quantity: MustDecimal(qty), UnitAmount: unit, TaxRate: MustDecimal(rate)}
}

func TestComputeTotalsTable(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lines      []LineItem
		tax        []int64
		totalTax   int64
		totalTotal int64
	}{
		{"no lines", nil, []int64{}, 0, 0},
		{"rounded once per rate, not per line", // per line: 3 x round(0.5)=3; per rate: round(1.5)=2
			[]LineItem{line("1", 1, "50"), line("1", 1, "50"), line("1", 1, "50")}, []int64{1, 1, 0}, 2, 5},
		{"largest remainder wins", // shares 0.3, 0.9, 0.3 of tax round(1.5)=2 -> floors 0,0,0 then the .9 and earlier .3
			[]LineItem{line("1", 1, "30"), line("1", 3, "30"), line("1", 1, "30")}, []int64{1, 1, 0}, 2, 7},
		{"rates are separate groups",
			[]LineItem{line("1", 999, "20"), line("1", 1999, "7.5"), line("2", 10, "0")}, []int64{200, 150, 0}, 350, 3368},
		{"100 percent", []LineItem{line("1", 7, "100")}, []int64{7}, 7, 14},
		{"four-decimal rate", []LineItem{line("1", 1000000, "19.6001")}, []int64{196001}, 196001, 1196001},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ComputeTotals(tc.lines)
			if err != nil {
				t.Fatal(err)
			}
			if got.Tax != tc.totalTax || got.Total != tc.totalTotal || len(got.TaxAmounts) != len(tc.tax) {
				t.Fatalf("got %+v", got)
			}
			for i := range tc.tax {
				if got.TaxAmounts[i] != tc.tax[i] {
					t.Fatalf("tax amounts %v, want %v", got.TaxAmounts, tc.tax)
				}
			}
		})
	}
	var overflow *LineOverflowError
	if _, err := ComputeTotals([]LineItem{line("1", MaxAmount, "0"), line("1", 1, "0")}); !errors.As(err, &overflow) || overflow.Index != -1 {
		t.Fatalf("sum overflow: %v", err)
	}
	if _, err := ComputeTotals([]LineItem{line("1", MaxAmount, "0.0001")}); !errors.Is(err, ErrOverflow) {
		t.Fatalf("total overflow through tax: %v", err)
	}
	if _, err := ComputeTotals([]LineItem{line("1", 1, "0"), line("3", MaxAmount, "0")}); !errors.As(err, &overflow) || overflow.Index != 1 {
		t.Fatalf("line overflow: %v", err)
	}
}

// roundHalfUp of a non-negative rational, computed independently with big.Rat.
func roundHalfUp(r *big.Rat) int64 {
	half := new(big.Rat).Add(r, big.NewRat(1, 2))
	return new(big.Int).Quo(half.Num(), half.Denom()).Int64()
}

func genDecimal(t *rapid.T, label string, maxScaled int64) Decimal {
	return Decimal{scaled: rapid.Int64Range(0, maxScaled).Draw(t, label)}
}

// Property: for any lines, amounts are exact half-up products, tax is
// rounded once per rate, line taxes add up exactly to it and never stray
// one unit or more from their exact share, and totals add up.
func TestComputeTotalsProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		rates := []Decimal{MustDecimal("0"), MustDecimal("20"), MustDecimal("7.5"), genDecimal(t, "rate", 100*decimalScale)}
		n := rapid.IntRange(0, 30).Draw(t, "n")
		lines := make([]LineItem, n)
		for i := range lines {
			q := genDecimal(t, "qty", 1_000_000*decimalScale)
			if q.scaled == 0 {
				q.scaled = 1
			}
			lines[i] = LineItem{Quantity: q, UnitAmount: rapid.Int64Range(0, 10_000_000).Draw(t, "unit"),
				TaxRate: rapid.SampledFrom(rates).Draw(t, "rate")}
		}
		got, err := ComputeTotals(lines)
		if err != nil {
			t.Fatalf("ComputeTotals: %v", err)
		}
		var sub, tax int64
		byRate := map[int64]*big.Rat{}
		taxByRate := map[int64]int64{}
		for i, l := range lines {
			exact := new(big.Rat).Mul(big.NewRat(l.Quantity.scaled, decimalScale), big.NewRat(l.UnitAmount, 1))
			if want := roundHalfUp(exact); got.Amounts[i] != want {
				t.Fatalf("line %d amount %d, want %d", i, got.Amounts[i], want)
			}
			share := new(big.Rat).Mul(big.NewRat(got.Amounts[i], 1), big.NewRat(l.TaxRate.scaled, 100*decimalScale))
			diff := new(big.Rat).Sub(big.NewRat(got.TaxAmounts[i], 1), share)
			if diff.Abs(diff).Cmp(big.NewRat(1, 1)) >= 0 {
				t.Fatalf("line %d tax %d strays from its share %s", i, got.TaxAmounts[i], share.FloatString(6))
			}
			if byRate[l.TaxRate.scaled] == nil {
				byRate[l.TaxRate.scaled] = new(big.Rat)
			}
			byRate[l.TaxRate.scaled].Add(byRate[l.TaxRate.scaled], share)
			taxByRate[l.TaxRate.scaled] += got.TaxAmounts[i]
			sub += got.Amounts[i]
			tax += got.TaxAmounts[i]
		}
		for rate, exact := range byRate {
			if want := roundHalfUp(exact); taxByRate[rate] != want {
				t.Fatalf("rate %d: line taxes add to %d, want round_half_up(%s) = %d", rate, taxByRate[rate], exact.FloatString(6), want)
			}
		}
		if got.Subtotal != sub || got.Tax != tax || got.Total != sub+tax {
			t.Fatalf("totals %+v, lines add to %d + %d", got, sub, tax)
		}
	})
}

// Property: any amount beyond MaxAmount is an error, never a wrapped value.
func TestOverflowProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		q := genDecimal(t, "qty", 99_999_999_999_999*decimalScale+9999)
		unit := rapid.Int64Range(0, MaxAmount).Draw(t, "unit")
		got, err := LineAmount(q, unit)
		exact := new(big.Rat).Mul(big.NewRat(q.scaled, decimalScale), big.NewRat(unit, 1))
		want := new(big.Rat).Add(exact, big.NewRat(1, 2))
		wantInt := new(big.Int).Quo(want.Num(), want.Denom())
		if wantInt.Cmp(big.NewInt(MaxAmount)) > 0 {
			if !errors.Is(err, ErrOverflow) {
				t.Fatalf("LineAmount(%s, %d) = %d, want overflow", q, unit, got)
			}
			return
		}
		if err != nil || got != wantInt.Int64() {
			t.Fatalf("LineAmount(%s, %d) = %d, %v; want %s", q, unit, got, err, wantInt)
		}
	})
}

func TestDecimalRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		d := genDecimal(t, "d", 99_999_999_999_999*decimalScale+9999)
		back, err := ParseDecimal(d.String())
		if err != nil || back != d {
			t.Fatalf("%d -> %q -> %d, %v", d.scaled, d.String(), back.scaled, err)
		}
	})
	for in, want := range map[string]string{"007": "7", "1.50": "1.5", "0.0001": "0.0001", "100.0000": "100", "0": "0"} {
		if got := MustDecimal(in).String(); got != want {
			t.Errorf("%s -> %s, want %s", in, got, want)
		}
	}
	for _, bad := range []string{"", ".5", "5.", "1.23456", "-1", "+1", "1e3", " 1", "1,5", "100000000000000", "0x10", "١"} {
		if _, err := ParseDecimal(bad); err == nil {
			t.Errorf("ParseDecimal(%q) accepted", bad)
		}
	}
}
