package fhir

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

const testRequest = "1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f00f"

func testAccess() AccessInfo {
	return AccessInfo{
		ID:       testRequest,
		Record:   testRecord1,
		Patient:  testPatient,
		Accessor: testProvider,
		Holder:   testHolder,
		Purpose:  "TREAT",
		Served:   true,
		Recorded: time.Date(2025, 3, 4, 10, 11, 12, 345000000, time.UTC),
		Height:   123,
	}
}

var auditConstants = []string{
	"AuditEvent", "Patient", "R", "0", "4", "ledger-height",
	systemDICOM, "110110", "Patient Record",
	systemRestfulInteraction, "read",
	systemParticipationType, "IRCP", "information recipient", "CST", "custodian",
	SystemPatient, SystemProvider, SystemRecord,
	systemAuditEntityType, "1", "Person", "2", "System Object",
	systemObjectRole, "Domain Resource",
	systemActReason, "ETREAT", systemActCode, "BTG", "break the glass",
}

func TestAuditEventResource(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*AccessInfo)
		want   map[string]any // path → value; nil: absent
	}{
		{"served", func(*AccessInfo) {}, map[string]any{
			"resourceType":                      "AuditEvent",
			"id":                                testRequest,
			"type.system":                       systemDICOM,
			"type.code":                         "110110",
			"type.display":                      "Patient Record",
			"subtype.0.system":                  systemRestfulInteraction,
			"subtype.0.code":                    "read",
			"action":                            "R",
			"recorded":                          "2025-03-04T10:11:12.345Z",
			"outcome":                           "0",
			"outcomeDesc":                       nil,
			"purposeOfEvent.0.coding.0.system":  systemActReason,
			"purposeOfEvent.0.coding.0.code":    "TREAT",
			"purposeOfEvent.1":                  nil,
			"agent.0.type.coding.0.system":      systemParticipationType,
			"agent.0.type.coding.0.code":        "IRCP",
			"agent.0.who.identifier.system":     SystemProvider,
			"agent.0.who.identifier.value":      testProvider,
			"agent.0.requestor":                 true,
			"agent.1.type.coding.0.code":        "CST",
			"agent.1.who.identifier.system":     SystemProvider,
			"agent.1.who.identifier.value":      testHolder,
			"agent.1.requestor":                 false,
			"agent.2":                           nil,
			"source.observer.identifier.system": SystemProvider,
			"source.observer.identifier.value":  testHolder,
			"entity.0.what.identifier.system":   SystemPatient,
			"entity.0.what.identifier.value":    testPatient,
			"entity.0.type.system":              systemAuditEntityType,
			"entity.0.type.code":                "1",
			"entity.0.role.system":              systemObjectRole,
			"entity.0.role.code":                "1",
			"entity.1.what.identifier.system":   SystemRecord,
			"entity.1.what.identifier.value":    testRecord1,
			"entity.1.type.code":                "2",
			"entity.1.role.code":                "4",
			"entity.1.detail.0.type":            "ledger-height",
			"entity.1.detail.0.valueString":     "123",
			"entity.2":                          nil,
			"meta":                              nil,
		}},
		{"refused", func(a *AccessInfo) { a.Served, a.Reason = false, "no active consent" }, map[string]any{
			"outcome":     "4",
			"outcomeDesc": "no active consent",
		}},
		{"refused without reason", func(a *AccessInfo) { a.Served = false }, map[string]any{
			"outcome":     "4",
			"outcomeDesc": nil,
		}},
		{"served, a stray reason ignored", func(a *AccessInfo) { a.Reason = "x" }, map[string]any{
			"outcome":     "0",
			"outcomeDesc": nil,
		}},
		{"emergency", func(a *AccessInfo) { a.Emergency = true }, map[string]any{
			"meta.tag.0.system":              systemActCode,
			"meta.tag.0.code":                "BTG",
			"purposeOfEvent.0.coding.0.code": "TREAT",
			"purposeOfEvent.1.coding.0.code": "ETREAT",
			"purposeOfEvent.1.coding.1":      nil,
		}},
		{"emergency, no purpose, height unknown", func(a *AccessInfo) { a.Emergency, a.Purpose, a.Height = true, "", 0 }, map[string]any{
			"meta.tag.0.code":                "BTG",
			"purposeOfEvent.0.coding.0.code": "ETREAT",
			"purposeOfEvent.1":               nil,
			"entity.1.detail":                nil,
		}},
		{"no purpose", func(a *AccessInfo) { a.Purpose = "" }, map[string]any{
			"purposeOfEvent": nil,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testAccess()
			tc.modify(&a)
			out, err := AuditEventResource(a)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s", out)
			r := parseBuilt(t, out, "AuditEvent", a.ID)
			if r.PatientRefs != nil {
				t.Errorf("PatientRefs %v: the patient is named by identifier only", r.PatientRefs)
			}
			for path, want := range tc.want {
				if got := field(t, out, path); got != want {
					t.Errorf("%s = %v, want %v", path, got, want)
				}
			}
			given := []string{a.ID, a.Record, a.Patient, a.Accessor, a.Holder, a.Purpose,
				"2025-03-04T10:11:12.345Z", "123"}
			if !a.Served {
				given = append(given, a.Reason)
			}
			checkOnly(t, out, given, auditConstants)
			again, err := AuditEventResource(a)
			if err != nil || !bytes.Equal(again, out) {
				t.Errorf("not deterministic (%v)", err)
			}
		})
	}
}

func TestAuditEventResourceRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*AccessInfo)
		msg    string
	}{
		{"no id", func(a *AccessInfo) { a.ID = "" }, "id is missing"},
		{"no record", func(a *AccessInfo) { a.Record = "" }, "record is missing"},
		{"patient not hex", func(a *AccessInfo) { a.Patient = "Patient/p1" }, "patient \"Patient/p1\" is not lowercase hex"},
		{"no accessor", func(a *AccessInfo) { a.Accessor = "" }, "accessor is missing"},
		{"holder too long", func(a *AccessInfo) { a.Holder = strings.Repeat("a", 129) }, "holder is 129 characters"},
		{"no time", func(a *AccessInfo) { a.Recorded = time.Time{} }, "recorded time is missing"},
		{"bad purpose", func(a *AccessInfo) { a.Purpose = "TREAT ETREAT" }, "not a v3 ActReason code"},
		{"bad reason", func(a *AccessInfo) { a.Served, a.Reason = false, "\xfe" }, "reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := testAccess()
			tc.modify(&a)
			out, err := AuditEventResource(a)
			if err == nil {
				t.Fatalf("accepted: %s", out)
			}
			if !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), "fhir: audit event") {
				t.Errorf("got %q, want it to contain %q", err, tc.msg)
			}
		})
	}
}
