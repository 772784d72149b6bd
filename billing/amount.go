package billing

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/medledger/medledger/chain"
)

// Amounts are whole cents (uint64) everywhere; a decimal is converted exactly or refused. No
// float ever holds money: 0.1+0.2 is not 0.3 in binary, and a claim's fingerprints and amounts
// must come out the same on the provider's and the payer's machines.

// maxDecimalLen bounds a decimal's text before it is parsed, so that a hostile "1e999999999"
// costs nothing.
const maxDecimalLen = 40

// maxExponent bounds a FHIR decimal's exponent (amounts past 10^20 are refused anyway).
const maxExponent = 24

// ParseAmount parses an amount as a person writes it in a fee schedule: digits with at most two
// decimals ("75", "75.5", "75.00"), no sign, no exponent, no thousands separators. It returns
// cents, at most chain.MaxClaimCents.
func ParseAmount(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" || !allDigits(intPart) || (hasDot && (len(frac) == 0 || len(frac) > 2 || !allDigits(frac))) {
		return 0, fmt.Errorf("amount %q is not a decimal like 75.00 (digits, at most two decimals)", s)
	}
	if len(intPart) > 12 {
		return 0, fmt.Errorf("amount %q is too large", s)
	}
	whole, _ := strconv.ParseUint(intPart, 10, 64)
	for len(frac) < 2 {
		frac += "0"
	}
	cents, _ := strconv.ParseUint(frac, 10, 64)
	total := whole*100 + cents
	if total > chain.MaxClaimCents {
		return 0, fmt.Errorf("amount %q is above %s", s, FormatCents(chain.MaxClaimCents))
	}
	return total, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// decimal parses a FHIR decimal (JSON number text: -?int(.frac)?([eE][+-]?exp)?) exactly.
func decimal(s string) (*big.Rat, error) {
	if len(s) == 0 || len(s) > maxDecimalLen {
		return nil, fmt.Errorf("decimal %q: empty or longer than %d characters", s, maxDecimalLen)
	}
	mant, exp := s, ""
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		mant, exp = s[:i], s[i+1:]
		e, err := strconv.Atoi(exp)
		if err != nil || e > maxExponent || e < -maxExponent {
			return nil, fmt.Errorf("decimal %q: exponent out of range", s)
		}
	}
	m := strings.TrimPrefix(mant, "-")
	ip, fp, dot := strings.Cut(m, ".")
	if !allDigits(ip) || (dot && !allDigits(fp)) {
		return nil, fmt.Errorf("decimal %q is not a number", s)
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, fmt.Errorf("decimal %q is not a number", s)
	}
	return r, nil
}

var hundred = big.NewRat(100, 1)

// ratCents converts an exact amount to cents: it must be whole cents, not negative and at most
// chain.MaxClaimCents.
func ratCents(r *big.Rat) (uint64, error) {
	c := new(big.Rat).Mul(r, hundred)
	switch {
	case c.Sign() < 0:
		return 0, errors.New("negative amount")
	case !c.IsInt():
		return 0, fmt.Errorf("amount %s is not a whole number of cents", r.FloatString(4))
	case !c.Num().IsUint64() || c.Num().Uint64() > chain.MaxClaimCents:
		return 0, fmt.Errorf("amount above %s", FormatCents(chain.MaxClaimCents))
	}
	return c.Num().Uint64(), nil
}

// DecimalCents converts a FHIR decimal (the exact JSON number text, as json.Number keeps it) to
// cents. "75", "75.0", "75.00" and "7.5e1" are all 7500; "75.005" is refused rather than
// rounded.
func DecimalCents(s string) (uint64, error) {
	r, err := decimal(s)
	if err != nil {
		return 0, err
	}
	return ratCents(r)
}

// FormatCents writes cents as a decimal with two places ("75.00"): the exact form FHIR Money
// values take here.
func FormatCents(c uint64) string {
	return fmt.Sprintf("%d.%02d", c/100, c%100)
}
