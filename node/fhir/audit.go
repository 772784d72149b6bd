package fhir

import (
	"fmt"
	"strconv"
	"time"
)

const (
	systemDICOM              = "http://dicom.nema.org/resources/ontology/DCM"
	systemRestfulInteraction = "http://hl7.org/fhir/restful-interaction"
	systemAuditEntityType    = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
	systemObjectRole         = "http://terminology.hl7.org/CodeSystem/object-role"
)

// DetailLedgerHeight is the AuditEvent entity detail type that carries the
// ledger height of an access.
const DetailLedgerHeight = "ledger-height"

// AccessInfo is one request to read a record, as the ledger knows it, for
// AuditEventResource.
type AccessInfo struct {
	ID        string // request id, lowercase hex: the resource id
	Record    string // record id (hex)
	Patient   string // pseudonymous patient id (hex address)
	Accessor  string // provider id of the requester (hex address)
	Role      string // the role at the requester that asked (SystemAccessRole); "" for none
	Holder    string // provider id of the node that served or refused (hex address)
	Purpose   string // v3 ActReason code, "" for none
	Emergency bool   // break-the-glass
	Served    bool
	Reason    string // why it was refused; ignored when served
	Recorded  time.Time
	Height    uint64 // ledger height, 0 for unknown
}

// AuditEventResource writes a as a FHIR R4 AuditEvent in canonical JSON
// (compact, keys sorted, like Resource.JSON), in the style of the IHE Basic
// Audit Log Patterns for a read of a patient's record; its id is the
// request id:
//
//   - type DICOM 110110 "Patient Record", subtype restful-interaction read,
//     action R, recorded;
//   - outcome 0 when served, 4 when refused, with outcomeDesc the reason;
//   - purposeOfEvent: the purpose (v3-ActReason); an emergency access adds
//     ETREAT and carries the meta.tag v3-ActCode BTG (break the glass);
//   - agent[0]: the accessor, type v3-ParticipationType IRCP, requestor,
//     with the role it asked under (SystemAccessRole) when known;
//     agent[1]: the holder, type CST (custodian), not requestor; both by
//     identifier (SystemProvider) only;
//   - source.observer: the holder;
//   - entity[0]: the patient (identifier SystemPatient, type 1 Person, role
//     1 Patient); entity[1]: the record (identifier SystemRecord, type 2
//     System Object, role 4 Domain Resource) with the ledger height as
//     detail DetailLedgerHeight when known.
//
// Every id must be lowercase hex and the purpose a well-formed code; the
// resource holds nothing but the given ids, codes, time and reason, and the
// fixed codes above. Since the patient is named by identifier only, the
// resource has no PatientRefs when parsed.
func AuditEventResource(a AccessInfo) ([]byte, error) {
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("fhir: audit event %s: "+format, append([]any{a.ID}, args...)...)
	}
	if err := checkID("id", a.ID, 64); err != nil {
		return nil, fmt.Errorf("fhir: audit event: %w", err)
	}
	for _, f := range []struct{ what, id string }{
		{"record", a.Record}, {"patient", a.Patient}, {"accessor", a.Accessor}, {"holder", a.Holder},
	} {
		if err := checkID(f.what, f.id, maxIdentifier); err != nil {
			return fail("%v", err)
		}
	}
	if a.Role != "" && !validText(a.Role) {
		return fail("role is not a valid FHIR string")
	}
	recorded, err := fhirTime("recorded", a.Recorded)
	if err != nil {
		return fail("%v", err)
	}
	purposes, err := purposeCodings(a.Purpose, a.Emergency)
	if err != nil {
		return fail("%v", err)
	}

	record := map[string]any{
		"what": identifierRef("", SystemRecord, a.Record),
		"type": coding(systemAuditEntityType, "2", "System Object"),
		"role": coding(systemObjectRole, "4", "Domain Resource"),
	}
	if a.Height > 0 {
		record["detail"] = []any{map[string]any{
			"type":        DetailLedgerHeight,
			"valueString": strconv.FormatUint(a.Height, 10),
		}}
	}
	accessor := map[string]any{
		"type":      concept(coding(systemParticipationType, "IRCP", "information recipient")),
		"who":       identifierRef("", SystemProvider, a.Accessor),
		"requestor": true,
	}
	if a.Role != "" {
		accessor["role"] = []any{concept(coding(SystemAccessRole, a.Role, ""))}
	}
	res := map[string]any{
		"resourceType": "AuditEvent",
		"id":           a.ID,
		"type":         coding(systemDICOM, "110110", "Patient Record"),
		"subtype":      []any{coding(systemRestfulInteraction, "read", "read")},
		"action":       "R",
		"recorded":     recorded,
		"agent": []any{
			accessor,
			map[string]any{
				"type":      concept(coding(systemParticipationType, "CST", "custodian")),
				"who":       identifierRef("", SystemProvider, a.Holder),
				"requestor": false,
			},
		},
		"source": map[string]any{"observer": identifierRef("", SystemProvider, a.Holder)},
		"entity": []any{
			map[string]any{
				"what": identifierRef("Patient", SystemPatient, a.Patient),
				"type": coding(systemAuditEntityType, "1", "Person"),
				"role": coding(systemObjectRole, "1", "Patient"),
			},
			record,
		},
	}
	if a.Served {
		res["outcome"] = "0"
	} else {
		res["outcome"] = "4"
		if a.Reason != "" {
			if !validText(a.Reason) {
				return fail("reason is not a valid FHIR string (UTF-8 text without form feeds)")
			}
			res["outcomeDesc"] = a.Reason
		}
	}
	if len(purposes) > 0 {
		pe := make([]any, len(purposes))
		for i, p := range purposes {
			pe[i] = concept(p)
		}
		res["purposeOfEvent"] = pe
	}
	if a.Emergency {
		res["meta"] = btgMeta()
	}
	out, err := canonical(res)
	if err != nil {
		return fail("encode: %v", err)
	}
	return out, nil
}
