package fhir

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

const (
	testConsentID = "5f1c0b9e3a7d4c2e8b6f0a1d9e3c7b5a2f8e4d6c0b1a3f5e7d9c2b4a6f8e0d1c"
	testPatient   = "3a9f1c2b4d5e6f708192a3b4c5d6e7f8091a2b3c"
	testProvider  = "c0ffee00112233445566778899aabbccddeeff00"
	testHolder    = "0badc0de0badc0de0badc0de0badc0de0badc0de"
	testRecord1   = "aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44ee55ff66aa11bb22cc33dd44"
	testRecord2   = "99887766554433221100ffeeddccbbaa99887766554433221100ffeeddccbbaa"
)

var testGranted = time.Date(2025, 3, 4, 10, 11, 12, 0, time.FixedZone("CET", 3600))

func testConsent() ConsentInfo {
	return ConsentInfo{
		ID:      testConsentID,
		Patient: testPatient,
		Grantee: testProvider,
		Status:  "active",
		Scope:   "all",
		Purpose: "TREAT",
		Granted: testGranted,
	}
}

// consentConstants are the fixed strings a Consent may hold besides the
// given ones.
var consentConstants = []string{
	"Consent", "Patient", "permit", "instance",
	SystemPatient, SystemProvider, SystemRecord, SystemConsent, ExtensionConsentReason,
	systemConsentScope, "patient-privacy", systemLOINC, "59284-0",
	systemActCode, "OPTIN", "EMRGONLY", "BTG", "break the glass",
	systemParticipationType, "IRCP", systemActReason, "ETREAT", systemResourceTypes,
}

// stringLeaves returns every string value in a JSON document (not the
// keys), and fails on numbers: the built resources have none.
func stringLeaves(t *testing.T, data []byte) []string {
	t.Helper()
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		case string:
			out = append(out, x)
		case bool:
		default:
			t.Errorf("unexpected value %v (%T)", x, x)
		}
	}
	walk(doc)
	return out
}

// checkOnly fails if the resource holds a string that is neither given nor
// one of the constants, a field that could hold a name, or a literal
// reference.
func checkOnly(t *testing.T, data []byte, given, constants []string) {
	t.Helper()
	for _, s := range stringLeaves(t, data) {
		if !slices.Contains(given, s) && !slices.Contains(constants, s) {
			t.Errorf("holds %q, which is neither given nor a fixed code", s)
		}
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, e := range x {
				if _, isString := e.(string); k == "reference" && isString {
					t.Errorf("has a literal reference %q: references are by identifier only", e)
				}
				switch k {
				case "name", "text", "div", "contained", "description", "note":
					t.Errorf("has a %s field", k)
				}
				walk(e)
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
}

// parseBuilt parses a built resource with the package's own Validator and
// checks it is the one resource, unchanged (already canonical).
func parseBuilt(t *testing.T, data []byte, typ, id string) Resource {
	t.Helper()
	rs, err := validator(t).Parse(data)
	if err != nil {
		t.Fatalf("schema validation: %v\n%s", err, data)
	}
	if len(rs) != 1 || rs[0].ResourceType != typ || rs[0].ID != id {
		t.Fatalf("parsed as %+v", rs)
	}
	if !bytes.Equal(rs[0].JSON, data) {
		t.Errorf("not canonical:\n%s\n%s", data, rs[0].JSON)
	}
	return rs[0]
}

// field follows a path of object keys and array indexes ("provision",
// "actor", "0", …) through decoded JSON.
func field(t *testing.T, data []byte, path string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	for _, step := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[step]
		case []any:
			i, err := strconv.Atoi(step)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

func TestConsentResource(t *testing.T) {
	expires := testGranted.Add(90 * 24 * time.Hour)
	for _, tc := range []struct {
		name   string
		modify func(*ConsentInfo)
		want   map[string]any // path → value; nil value: absent
	}{
		{"all records", func(*ConsentInfo) {}, map[string]any{
			"resourceType":                                  "Consent",
			"id":                                            testConsentID,
			"identifier.0.system":                           SystemConsent,
			"identifier.0.value":                            testConsentID,
			"status":                                        "active",
			"scope.coding.0.system":                         systemConsentScope,
			"scope.coding.0.code":                           "patient-privacy",
			"category.0.coding.0.system":                    "http://loinc.org",
			"category.0.coding.0.code":                      "59284-0",
			"patient.identifier.system":                     SystemPatient,
			"patient.identifier.value":                      testPatient,
			"patient.type":                                  "Patient",
			"dateTime":                                      "2025-03-04T09:11:12Z",
			"policyRule.coding.0.system":                    systemActCode,
			"policyRule.coding.0.code":                      "OPTIN",
			"provision.type":                                "permit",
			"provision.period.start":                        "2025-03-04T09:11:12Z",
			"provision.period.end":                          nil,
			"provision.actor.0.role.coding.0.system":        systemParticipationType,
			"provision.actor.0.role.coding.0.code":          "IRCP",
			"provision.actor.0.reference.identifier.system": SystemProvider,
			"provision.actor.0.reference.identifier.value":  testProvider,
			"provision.purpose.0.system":                    systemActReason,
			"provision.purpose.0.code":                      "TREAT",
			"provision.purpose.1":                           nil,
			"provision.class":                               nil,
			"provision.data":                                nil,
			"meta":                                          nil,
			"extension":                                     nil,
		}},
		{"types, expiring", func(c *ConsentInfo) {
			c.Scope, c.Types, c.Expires = "types", []string{"Observation", "AllergyIntolerance"}, expires
		}, map[string]any{
			"provision.period.end":     "2025-06-02T09:11:12Z",
			"provision.class.0.system": systemResourceTypes,
			"provision.class.0.code":   "Observation",
			"provision.class.1.code":   "AllergyIntolerance",
			"provision.data":           nil,
		}},
		{"records, revoked", func(c *ConsentInfo) {
			c.Scope, c.Records, c.Status, c.Purpose = "records", []string{testRecord1, testRecord2}, "inactive", ""
		}, map[string]any{
			"status":                   "inactive",
			"provision.data.0.meaning": "instance",
			"provision.data.0.reference.identifier.system": SystemRecord,
			"provision.data.0.reference.identifier.value":  testRecord1,
			"provision.data.1.reference.identifier.value":  testRecord2,
			"provision.class":   nil,
			"provision.purpose": nil,
		}},
		{"emergency with a reason", func(c *ConsentInfo) {
			c.Emergency, c.Reason, c.Expires = true, "unconscious on arrival, <ER> & \"trauma\"", testGranted.Add(24*time.Hour)
		}, map[string]any{
			"meta.tag.0.system":          systemActCode,
			"meta.tag.0.code":            "BTG",
			"policyRule.coding.0.code":   "EMRGONLY",
			"provision.purpose.0.code":   "TREAT",
			"provision.purpose.1.code":   "ETREAT",
			"provision.purpose.1.system": systemActReason,
			"extension.0.url":            ExtensionConsentReason,
			"extension.0.valueString":    "unconscious on arrival, <ER> & \"trauma\"",
		}},
		{"emergency purpose already ETREAT", func(c *ConsentInfo) {
			c.Emergency, c.Purpose = true, "ETREAT"
		}, map[string]any{
			"meta.tag.0.code":          "BTG",
			"provision.purpose.0.code": "ETREAT",
			"provision.purpose.1":      nil,
		}},
		{"emergency without purpose", func(c *ConsentInfo) {
			c.Emergency, c.Purpose = true, ""
		}, map[string]any{
			"provision.purpose.0.code": "ETREAT",
			"provision.purpose.1":      nil,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConsent()
			tc.modify(&c)
			out, err := ConsentResource(c)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", out)
			r := parseBuilt(t, out, "Consent", c.ID)
			if r.PatientRefs != nil {
				t.Errorf("PatientRefs %v: the patient is named by identifier only", r.PatientRefs)
			}
			for path, want := range tc.want {
				if got := field(t, out, path); got != want {
					t.Errorf("%s = %v, want %v", path, got, want)
				}
			}
			given := append([]string{c.ID, c.Patient, c.Grantee, c.Status, c.Purpose, c.Reason,
				"2025-03-04T09:11:12Z", c.Expires.UTC().Format(time.RFC3339)}, c.Types...)
			checkOnly(t, out, append(given, c.Records...), consentConstants)
			again, err := ConsentResource(c)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("not deterministic (%v)", err)
			}
		})
	}
}

func TestConsentResourceRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*ConsentInfo)
		msg    string
	}{
		{"no id", func(c *ConsentInfo) { c.ID = "" }, "id is missing"},
		{"id too long for FHIR", func(c *ConsentInfo) { c.ID += "00" }, "more than 64"},
		{"uppercase id", func(c *ConsentInfo) { c.ID = strings.ToUpper(c.ID) }, "not lowercase hex"},
		{"patient name as id", func(c *ConsentInfo) { c.Patient = "Jane Doe" }, `patient "Jane Doe" is not lowercase hex`},
		{"no grantee", func(c *ConsentInfo) { c.Grantee = "" }, "grantee is missing"},
		{"bad status", func(c *ConsentInfo) { c.Status = "revoked" }, `status "revoked"`},
		{"bad scope", func(c *ConsentInfo) { c.Scope = "everything" }, `scope "everything"`},
		{"scope all with types", func(c *ConsentInfo) { c.Types = []string{"Observation"} }, "scope all with types"},
		{"scope types without types", func(c *ConsentInfo) { c.Scope = "types" }, "needs types"},
		{"scope records with types", func(c *ConsentInfo) {
			c.Scope, c.Records, c.Types = "records", []string{testRecord1}, []string{"Observation"}
		}, "needs records and no types"},
		{"bad type", func(c *ConsentInfo) { c.Scope, c.Types = "types", []string{"observation"} }, "not a FHIR resource type"},
		{"duplicate type", func(c *ConsentInfo) { c.Scope, c.Types = "types", []string{"Observation", "Observation"} }, "twice"},
		{"bad record", func(c *ConsentInfo) { c.Scope, c.Records = "records", []string{"rec-1"} }, "record \"rec-1\""},
		{"duplicate record", func(c *ConsentInfo) { c.Scope, c.Records = "records", []string{testRecord1, testRecord1} }, "twice"},
		{"bad purpose", func(c *ConsentInfo) { c.Purpose = "for treatment" }, "not a v3 ActReason code"},
		{"no grant time", func(c *ConsentInfo) { c.Granted = time.Time{} }, "granted time is missing"},
		{"expires before granted", func(c *ConsentInfo) { c.Expires = c.Granted.Add(-time.Second) }, "before it was granted"},
		{"year 10000", func(c *ConsentInfo) { c.Expires = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "outside the years"},
		{"invalid UTF-8 reason", func(c *ConsentInfo) { c.Reason = "bad \xff" }, "reason"},
		{"form feed reason", func(c *ConsentInfo) { c.Reason = "\f" }, "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConsent()
			tc.modify(&c)
			out, err := ConsentResource(c)
			if err == nil {
				t.Fatalf("accepted: %s", out)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "fhir: consent") {
				t.Errorf("got %q, want it to contain %q", err, tc.msg)
			}
		})
	}
}

// TestBuiltResourcesExport: Consents and AuditEvents go through
// ExportBundle together with ordinary resources and parse back unchanged.
func TestBuiltResourcesExport(t *testing.T) {
	var rs []Resource
	for _, f := range []string{"patient.json", "observation.json", "condition.json"} {
		rs = append(rs, mustParse(t, readFixture(t, f))...)
	}
	c := testConsent()
	c.Scope, c.Types, c.Emergency, c.Reason = "types", []string{"Observation"}, true, "ER"
	consent, err := ConsentResource(c)
	if err != nil {
		t.Fatal(err)
	}
	served, err := AuditEventResource(testAccess())
	if err != nil {
		t.Fatal(err)
	}
	a := testAccess()
	a.ID, a.Served, a.Reason = "77", false, "no consent"
	refused, err := AuditEventResource(a)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{consent, served, refused} {
		rs = append(rs, mustParse(t, b)...)
	}
	rs = append(rs, mustParse(t, readFixture(t, "bundle-collection.json"))...)
	for _, typ := range []string{"collection", "searchset"} {
		out, err := ExportBundle(rs, typ)
		if err != nil {
			t.Fatal(err)
		}
		back := mustParse(t, out)
		if len(back) != len(rs) {
			t.Fatalf("%d resources back, want %d", len(back), len(rs))
		}
		for i, r := range back {
			if !bytes.Equal(r.JSON, rs[i].JSON) || r.Name() != rs[i].Name() || !slices.Equal(r.PatientRefs, rs[i].PatientRefs) {
				t.Errorf("entry %d changed:\n%s\n%s", i, rs[i].JSON, r.JSON)
			}
		}
	}
}
