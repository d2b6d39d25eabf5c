package api

import (
	"errors"
	"math/bits"
	"sort"
	"strings"
)

// MaxAmount is the largest amount in minor units the API accepts or
// computes: 2^53-1, so every amount is exact in any JSON client (including
// JavaScript numbers). Anything larger is a validation error, never a wrap.
const MaxAmount = 1<<53 - 1

// decimalScale is 10^decimalPlaces: decimals are stored as integers scaled by it.
const (
	decimalPlaces = 4
	decimalScale  = 10000
	// maxIntDigits bounds the integer part so the scaled value fits an int64.
	maxIntDigits = 14
)

// ErrOverflow reports an amount beyond MaxAmount.
var ErrOverflow = errors.New("amount exceeds the maximum of 9007199254740991 minor units")

// Decimal is a non-negative decimal number with at most 4 fractional digits,
// held exactly as an integer scaled by 10^4 (no floats anywhere).
type Decimal struct{ scaled int64 }

// errDecimalSyntax is created once: ParseDecimal runs for every quantity and
// rate read or written, and a local errors.New allocated on every call.
var errDecimalSyntax = errors.New(`must be a decimal number such as "2" or "1.25"`)

// ParseDecimal parses digits with an optional fraction of 1..4 digits, e.g.
// "3", "0.5", "19.9999". Signs, exponents and spaces are rejected.
func ParseDecimal(s string) (Decimal, error) {
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || (hasDot && frac == "") || !allDigits(intPart) || !allDigits(frac) {
		return Decimal{}, errDecimalSyntax
	}
	if len(frac) > decimalPlaces {
		return Decimal{}, errors.New("must have at most 4 decimal places")
	}
	trimmed := strings.TrimLeft(intPart, "0")
	if len(trimmed) > maxIntDigits {
		return Decimal{}, errors.New("is too large")
	}
	var v int64
	for _, c := range trimmed {
		v = v*10 + int64(c-'0')
	}
	v *= decimalScale
	scale := int64(decimalScale / 10)
	for _, c := range frac {
		v += int64(c-'0') * scale
		scale /= 10
	}
	return Decimal{scaled: v}, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// DecimalFromInt returns n as a Decimal; n must be in 0..10^14-1.
func DecimalFromInt(n int64) Decimal { return Decimal{scaled: n * decimalScale} }

// MustDecimal is ParseDecimal for constants known to be valid; it panics otherwise.
func MustDecimal(s string) Decimal {
	d, err := ParseDecimal(s)
	if err != nil {
		panic("api.MustDecimal(" + s + "): " + err.Error())
	}
	return d
}

// IsZero reports whether d is 0.
func (d Decimal) IsZero() bool { return d.scaled == 0 }

// Scaled returns d x 10^4.
func (d Decimal) Scaled() int64 { return d.scaled }

// String returns the canonical form: no leading zeros, no trailing
// fractional zeros ("1.50" -> "1.5", "007" -> "7").
func (d Decimal) String() string {
	ip, fp := d.scaled/decimalScale, d.scaled%decimalScale
	s := itoa(ip)
	if fp == 0 {
		return s
	}
	f := itoa(fp + decimalScale)[1:] // zero-padded to 4 digits
	return s + "." + strings.TrimRight(f, "0")
}

// MarshalJSON renders the canonical string, e.g. "1.5".
func (d Decimal) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

// UnmarshalJSON accepts the canonical string form (used when reading stored JSON).
func (d *Decimal) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return errors.New("decimal: not a string")
	}
	v, err := ParseDecimal(string(b[1 : len(b)-1]))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// mulDivRoundHalfUp returns round_half_up(a*b/d) for non-negative operands,
// exact (128-bit intermediate), or ErrOverflow when the result exceeds MaxAmount.
func mulDivRoundHalfUp(a, b, d uint64) (int64, error) {
	q, r, err := mulDiv(a, b, d)
	if err != nil {
		return 0, err
	}
	if r >= d-r { // r/d >= 1/2
		q++
	}
	if q > MaxAmount {
		return 0, ErrOverflow
	}
	return int64(q), nil
}

// mulDiv returns the quotient and remainder of a*b/d.
func mulDiv(a, b, d uint64) (q, r uint64, err error) {
	hi, lo := bits.Mul64(a, b)
	if hi >= d {
		return 0, 0, ErrOverflow
	}
	q, r = bits.Div64(hi, lo, d)
	return q, r, nil
}

// LineAmount returns round_half_up(quantity x unitAmount).
func LineAmount(quantity Decimal, unitAmount int64) (int64, error) {
	if unitAmount < 0 || quantity.scaled < 0 {
		return 0, errors.New("negative operand")
	}
	return mulDivRoundHalfUp(uint64(quantity.scaled), uint64(unitAmount), decimalScale)
}

// addAmounts returns a+b or ErrOverflow beyond MaxAmount.
func addAmounts(a, b int64) (int64, error) {
	if a > MaxAmount-b {
		return 0, ErrOverflow
	}
	return a + b, nil
}

// Totals is the result of pricing a list of lines.
type Totals struct {
	Amounts    []int64 // per line, round_half_up(quantity x unit_amount)
	TaxAmounts []int64 // per line, allocated from the per-rate tax
	Subtotal   int64
	Tax        int64
	Total      int64
}

// LineOverflowError says which line's amount overflowed; Index is -1 when a
// sum overflowed.
type LineOverflowError struct{ Index int }

func (e *LineOverflowError) Error() string { return ErrOverflow.Error() }

// Unwrap makes errors.Is(err, ErrOverflow) true.
func (e *LineOverflowError) Unwrap() error { return ErrOverflow }

// ComputeTotals prices lines: each amount is round_half_up(quantity x
// unit_amount); tax is rounded once per rate over the sum of that rate's
// line amounts, then allocated to the lines by largest remainder (ties to the
// earlier line), so line tax amounts add up exactly to the tax.
func ComputeTotals(lines []LineItem) (Totals, error) {
	t := Totals{Amounts: make([]int64, len(lines)), TaxAmounts: make([]int64, len(lines))}
	byRate := map[int64][]int{}
	var rates []int64
	for i, l := range lines {
		a, err := LineAmount(l.Quantity, l.UnitAmount)
		if err != nil {
			return Totals{}, &LineOverflowError{Index: i}
		}
		t.Amounts[i] = a
		if t.Subtotal, err = addAmounts(t.Subtotal, a); err != nil {
			return Totals{}, &LineOverflowError{Index: -1}
		}
		r := l.TaxRate.scaled
		if _, ok := byRate[r]; !ok {
			rates = append(rates, r)
		}
		byRate[r] = append(byRate[r], i)
	}
	const rateDivisor = 100 * decimalScale // rate is a percent scaled by 10^4
	for _, rate := range rates {
		idx := byRate[rate]
		var sum int64
		for _, i := range idx {
			sum += t.Amounts[i] // cannot overflow: bounded by Subtotal
		}
		tax, err := mulDivRoundHalfUp(uint64(sum), uint64(rate), rateDivisor)
		if err != nil {
			return Totals{}, &LineOverflowError{Index: -1}
		}
		// Floor each line's exact share, then hand the remaining units to the
		// largest remainders.
		rems := make([]uint64, len(idx))
		var floors int64
		for k, i := range idx {
			q, r, err := mulDiv(uint64(t.Amounts[i]), uint64(rate), rateDivisor)
			if err != nil {
				return Totals{}, &LineOverflowError{Index: i}
			}
			t.TaxAmounts[i] = int64(q)
			rems[k] = r
			floors += int64(q)
		}
		order := make([]int, len(idx))
		for k := range order {
			order[k] = k
		}
		sort.SliceStable(order, func(a, b int) bool { return rems[order[a]] > rems[order[b]] })
		for k := int64(0); k < tax-floors; k++ {
			t.TaxAmounts[idx[order[k]]]++
		}
		if t.Tax, err = addAmounts(t.Tax, tax); err != nil {
			return Totals{}, &LineOverflowError{Index: -1}
		}
	}
	var err error
	if t.Total, err = addAmounts(t.Subtotal, t.Tax); err != nil {
		return Totals{}, &LineOverflowError{Index: -1}
	}
	return t, nil
}
