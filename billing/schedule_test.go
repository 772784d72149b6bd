package billing

import (
	"slices"
	"strings"
	"testing"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/wallet/envelope"
)

func TestParseAmount(t *testing.T) {
	for in, want := range map[string]uint64{"75.00": 7500, "75": 7500, "75.5": 7550, "0.01": 1, " 12.34 ": 1234, "0": 0} {
		got, err := ParseAmount(in)
		if err != nil || got != want {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "1.234", "1e2", "1,000.00", "$5", "75.", ".5", "abc", "10000001"} {
		if got, err := ParseAmount(in); err == nil {
			t.Errorf("ParseAmount(%q) = %d, want an error", in, got)
		}
	}
}

func TestDecimalCents(t *testing.T) {
	for in, want := range map[string]uint64{"75.00": 7500, "75": 7500, "129.16": 12916, "7.5e1": 7500, "1E-2": 1, "0.0": 0, "118.820": 11882} {
		got, err := DecimalCents(in)
		if err != nil || got != want {
			t.Errorf("DecimalCents(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"75.005", "-1", "1e999999999", "1e30", "abc", "", "0x10", strings.Repeat("9", 50)} {
		if got, err := DecimalCents(in); err == nil {
			t.Errorf("DecimalCents(%q) = %d, want an error", in, got)
		}
	}
	if FormatCents(7505) != "75.05" || FormatCents(3) != "0.03" {
		t.Fatal(FormatCents(7505), FormatCents(3))
	}
}

func TestParseFeeCSV(t *testing.T) {
	fees, err := ParseFeeCSV(strings.NewReader("Code,Allowed\n99213,75.00\n\n 36415 , 12.5\nG0438,180\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Fee{{"99213", 7500}, {"36415", 1250}, {"G0438", 18000}}
	if !slices.Equal(fees, want) {
		t.Fatalf("got %v, want %v", fees, want)
	}
	if fees, err := ParseFeeCSV(strings.NewReader("99213,75.00")); err != nil || len(fees) != 1 {
		t.Fatalf("no header: %v %v", fees, err)
	}
	for in, wantErr := range map[string]string{
		"code,allowed\n99213,75.00\n99214,seventy\n": "line 3",
		"99213,75.00\n99213,80.00\n":                 "line 2: code 99213 already on line 1",
		"99213,75.00,extra\n":                        "line 1: 3 fields",
		"99213\n":                                    "line 1: 1 fields",
		"99213,-5\n":                                 "line 1",
		"99213,1.234\n":                              "line 1",
		"ABCDEFGHIJKLMNOPQ,1\n":                      "line 1",
		"code,allowed\n":                             "no fees",
		"99213,\"75.00\n":                            "fee schedule",
		strings.Repeat("x", MaxFeeCSVBytes+1):        "larger than",
	} {
		_, err := ParseFeeCSV(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseFeeCSV(%.30q): %v, want an error with %q", in, err, wantErr)
		}
	}
	var many strings.Builder
	for i := 0; i <= chain.MaxFeeEntries; i++ {
		many.WriteString("C" + strings.Repeat("0", 5-len(itoa(i))) + itoa(i) + ",1.00\n")
	}
	if _, err := ParseFeeCSV(strings.NewReader(many.String())); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("too many fees: %v", err)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func testPlan(id byte, covered ...string) chain.Plan {
	var h chain.Hash
	h[0] = id
	return chain.Plan{ID: h, Label: "Adult monthly", Currency: "USD", Period: chain.PeriodMonthly, MaxMembers: 1,
		Tiers: []chain.PlanTier{{Label: "adult", PriceCents: 7500}}, Covered: covered}
}

func TestBuildSchedule(t *testing.T) {
	priv, err := envelope.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	key := testKey(t)
	in := ScheduleInput{
		ChainID: "medledger-test", Payer: addr(1), Provider: addr(2),
		ProviderEncryptionKey: priv.Public().Bytes(), Currency: "USD", CoinsurancePct: 20,
		Fees:  []Fee{{"99213", 7500}, {"36415", 1250}, {"G0438", 18000}},
		Plans: []chain.Plan{testPlan(9, "36415", "99213"), testPlan(3), testPlan(5, "99214")},
	}
	s, err := BuildSchedule(key, in)
	if err != nil {
		t.Fatal(err)
	}
	if s.KeyCommit != KeyCommit(key) || s.Currency != "USD" || s.CoinsurancePct != 20 || len(s.Fees) != 3 {
		t.Fatalf("schedule %+v", s)
	}
	for _, f := range in.Fees {
		if got, ok := FeeFor(key, s, f.Code); !ok || got != f.AllowedCents {
			t.Errorf("fee for %s: %d %v", f.Code, got, ok)
		}
	}
	if _, ok := FeeFor(key, s, "99215"); ok {
		t.Error("fee for a code not in the schedule")
	}
	// Plan 3 covers nothing and is left out; 5 before 9.
	if len(s.Excluded) != 2 || s.Excluded[0].Plan[0] != 5 || s.Excluded[1].Plan[0] != 9 {
		t.Fatalf("exclusions %+v", s.Excluded)
	}
	if !slices.Contains(s.Excluded[1].Codes, CodeFingerprint(key, "99213")) || !slices.Contains(s.Excluded[1].Codes, CodeFingerprint(key, "36415")) {
		t.Fatal("plan 9's covered codes are not excluded")
	}
	got, err := OpenScheduleKey(s, in.ChainID, in.Payer, priv)
	if err != nil || string(got) != string(key) {
		t.Fatalf("provider cannot open the key: %v", err)
	}
	// Nothing in clear: no code string appears in the schedule's encoding.
	enc := string(chain.Encode(s))
	for _, c := range []string{"99213", "36415", "G0438"} {
		if strings.Contains(enc, c) {
			t.Errorf("code %s in clear in the schedule", c)
		}
	}

	bad := in
	bad.Fees = []Fee{{"99213", 1}, {" 99213", 2}}
	if _, err := BuildSchedule(key, bad); err == nil {
		t.Error("repeated fee code accepted")
	}
	bad = in
	bad.Currency = "usd"
	if _, err := BuildSchedule(key, bad); err == nil {
		t.Error("bad currency accepted")
	}
	bad = in
	bad.Plans = []chain.Plan{testPlan(9, "1"), testPlan(9, "2")}
	if _, err := BuildSchedule(key, bad); err == nil {
		t.Error("repeated plan accepted")
	}
	if _, err := BuildSchedule(key[:3], in); err == nil {
		t.Error("short key accepted")
	}
}
