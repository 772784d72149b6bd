package fhir

import (
	"fmt"
	"regexp"
	"slices"
	"time"
	"unicode/utf8"
)

// Code systems and identifier systems of the Consent and AuditEvent
// resources this package builds.
const (
	SystemPatient  = "urn:medledger:patient"  // pseudonymous patient ids (hex addresses)
	SystemProvider = "urn:medledger:provider" // provider ids (hex addresses)
	SystemRecord   = "urn:medledger:record"   // record ids (hex)
	SystemConsent  = "urn:medledger:consent"  // consent ids (hex)
	// SystemAccessRole codes the role a read was asked under (a practice's staff role, or
	// "patient" for the patient's own read): chain.AccessRequest.Role.
	SystemAccessRole = "urn:medledger:access-role"

	systemActCode           = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	systemActReason         = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
	systemParticipationType = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
	systemConsentScope      = "http://terminology.hl7.org/CodeSystem/consentscope"
	systemLOINC             = "http://loinc.org"
	systemResourceTypes     = "http://hl7.org/fhir/resource-types"
)

// ExtensionConsentReason is the extension that carries ConsentInfo.Reason:
// R4 Consent has no element for a free-text justification.
const ExtensionConsentReason = "urn:medledger:fhir:extension:consent-reason"

// ConsentInfo is a consent as the ledger knows it, for ConsentResource.
type ConsentInfo struct {
	ID      string // consent id, lowercase hex: the resource id
	Patient string // pseudonymous patient id (hex address)
	Grantee string // provider id (hex address)
	// Status is a FHIR Consent status: "active", or "inactive" once revoked
	// or expired ("draft", "proposed", "rejected" and "entered-in-error" are
	// accepted too).
	Status  string
	Scope   string   // "all", "types" (Types) or "records" (Records)
	Types   []string // FHIR resource types, for scope "types"
	Records []string // record ids (hex), for scope "records"
	// Purpose is a v3 ActReason code (TREAT, ETREAT, HPAYMT, …), "" for
	// none.
	Purpose   string
	Granted   time.Time
	Expires   time.Time // zero: does not expire
	Emergency bool      // break-the-glass
	Reason    string    // free text, "" for none
}

var (
	// lowerHex is how the ledger writes ids and addresses.
	lowerHex = regexp.MustCompile(`^[0-9a-f]+$`)
	// actCode is a v3 code: a FHIR code without spaces.
	actCode      = regexp.MustCompile(`^[A-Za-z0-9_\-.]{1,64}$`)
	resourceName = regexp.MustCompile(`^[A-Z][A-Za-z]{1,63}$`)
	// fhirString is the syntax of a FHIR string.
	fhirString = regexp.MustCompile(`^[ \r\n\t\S]+$`)
)

// maxIdentifier bounds the ids put in identifiers.
const maxIdentifier = 128

var consentStatuses = []string{"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"}

// ConsentResource writes c as a FHIR R4 Consent in canonical JSON (compact,
// keys sorted, like Resource.JSON), whose id is the consent id:
//
//   - scope patient-privacy, category LOINC 59284-0 (patient consent);
//   - patient: an identifier (SystemPatient) only, no reference and no name;
//   - dateTime: Granted;
//   - policyRule: v3-ActCode OPTIN, or EMRGONLY for an emergency consent;
//   - provision: permit, period from Granted to Expires (no end if it does
//     not expire), the grantee as actor (role v3-ParticipationType IRCP,
//     identifier SystemProvider), the purpose (v3-ActReason), the resource
//     types as class (scope "types") or the records as data of meaning
//     "instance" (identifier SystemRecord, scope "records");
//   - an emergency consent carries the meta.tag v3-ActCode BTG (break the
//     glass) and the purpose ETREAT besides any other purpose;
//   - Reason, if any, in the extension ExtensionConsentReason.
//
// Every id must be lowercase hex and the codes well formed; the resource
// holds nothing but the given ids, codes, times and reason, and the fixed
// codes above.
func ConsentResource(c ConsentInfo) ([]byte, error) {
	fail := func(format string, args ...any) ([]byte, error) {
		return nil, fmt.Errorf("fhir: consent %s: "+format, append([]any{c.ID}, args...)...)
	}
	if err := checkID("id", c.ID, 64); err != nil {
		return nil, fmt.Errorf("fhir: consent: %w", err)
	}
	if err := checkID("patient", c.Patient, maxIdentifier); err != nil {
		return fail("%v", err)
	}
	if err := checkID("grantee", c.Grantee, maxIdentifier); err != nil {
		return fail("%v", err)
	}
	if !slices.Contains(consentStatuses, c.Status) {
		return fail("status %q is not a FHIR Consent status (active, inactive, …)", c.Status)
	}
	granted, err := fhirTime("granted", c.Granted)
	if err != nil {
		return fail("%v", err)
	}
	period := map[string]any{"start": granted}
	if !c.Expires.IsZero() {
		end, err := fhirTime("expires", c.Expires)
		if err != nil {
			return fail("%v", err)
		}
		if c.Expires.Before(c.Granted) {
			return fail("expires %s before it was granted (%s)", end, granted)
		}
		period["end"] = end
	}
	purposes, err := purposeCodings(c.Purpose, c.Emergency)
	if err != nil {
		return fail("%v", err)
	}
	if c.Reason != "" && !validText(c.Reason) {
		return fail("reason is not a valid FHIR string (UTF-8 text without form feeds)")
	}

	provision := map[string]any{
		"type":   "permit",
		"period": period,
		"actor": []any{map[string]any{
			"role":      concept(coding(systemParticipationType, "IRCP", "")),
			"reference": identifierRef("", SystemProvider, c.Grantee),
		}},
	}
	if len(purposes) > 0 {
		provision["purpose"] = purposes
	}
	switch c.Scope {
	case "all":
		if len(c.Types) > 0 || len(c.Records) > 0 {
			return fail("scope all with types or records")
		}
	case "types":
		if len(c.Types) == 0 || len(c.Records) > 0 {
			return fail("scope types needs types and no records")
		}
		class := make([]any, len(c.Types))
		for i, t := range c.Types {
			if !resourceName.MatchString(t) {
				return fail("%q is not a FHIR resource type", t)
			}
			if slices.Contains(c.Types[:i], t) {
				return fail("resource type %s given twice", t)
			}
			class[i] = coding(systemResourceTypes, t, "")
		}
		provision["class"] = class
	case "records":
		if len(c.Records) == 0 || len(c.Types) > 0 {
			return fail("scope records needs records and no types")
		}
		data := make([]any, len(c.Records))
		for i, r := range c.Records {
			if err := checkID("record", r, maxIdentifier); err != nil {
				return fail("%v", err)
			}
			if slices.Contains(c.Records[:i], r) {
				return fail("record %s given twice", r)
			}
			data[i] = map[string]any{
				"meaning":   "instance",
				"reference": identifierRef("", SystemRecord, r),
			}
		}
		provision["data"] = data
	default:
		return fail("scope %q, want all, types or records", c.Scope)
	}

	policy := "OPTIN"
	if c.Emergency {
		policy = "EMRGONLY"
	}
	res := map[string]any{
		"resourceType": "Consent",
		"id":           c.ID,
		"identifier":   []any{map[string]any{"system": SystemConsent, "value": c.ID}},
		"status":       c.Status,
		"scope":        concept(coding(systemConsentScope, "patient-privacy", "")),
		"category":     []any{concept(coding(systemLOINC, "59284-0", ""))},
		"patient":      identifierRef("Patient", SystemPatient, c.Patient),
		"dateTime":     granted,
		"policyRule":   concept(coding(systemActCode, policy, "")),
		"provision":    provision,
	}
	if c.Emergency {
		res["meta"] = btgMeta()
	}
	if c.Reason != "" {
		res["extension"] = []any{map[string]any{"url": ExtensionConsentReason, "valueString": c.Reason}}
	}
	out, err := canonical(res)
	if err != nil {
		return fail("encode: %v", err)
	}
	return out, nil
}

// checkID checks an id given to ConsentResource or AuditEventResource.
func checkID(what, id string, maxLen int) error {
	switch {
	case id == "":
		return fmt.Errorf("%s is missing", what)
	case len(id) > maxLen:
		return fmt.Errorf("%s is %d characters, more than %d", what, len(id), maxLen)
	case !lowerHex.MatchString(id):
		return fmt.Errorf("%s %q is not lowercase hex", what, id)
	}
	return nil
}

// validText reports whether s is a valid, non-empty FHIR string in valid
// UTF-8 (the JSON encoder would otherwise replace bad bytes).
func validText(s string) bool {
	return utf8.ValidString(s) && fhirString.MatchString(s)
}

// fhirTime renders t as a FHIR instant (also a valid dateTime), in UTC.
func fhirTime(what string, t time.Time) (string, error) {
	if t.IsZero() {
		return "", fmt.Errorf("%s time is missing", what)
	}
	t = t.UTC()
	if y := t.Year(); y < 1 || y > 9999 {
		return "", fmt.Errorf("%s time %v is outside the years 1 to 9999", what, t)
	}
	return t.Format(time.RFC3339Nano), nil
}

// purposeCodings returns the v3-ActReason codings of a purpose, with ETREAT
// added for an emergency.
func purposeCodings(purpose string, emergency bool) ([]any, error) {
	var out []any
	if purpose != "" {
		if !actCode.MatchString(purpose) {
			return nil, fmt.Errorf("purpose %q is not a v3 ActReason code", purpose)
		}
		out = append(out, coding(systemActReason, purpose, ""))
	}
	if emergency && purpose != "ETREAT" {
		out = append(out, coding(systemActReason, "ETREAT", ""))
	}
	return out, nil
}

// btgMeta is the meta of an emergency resource: the break-the-glass tag.
func btgMeta() map[string]any {
	return map[string]any{"tag": []any{coding(systemActCode, "BTG", "break the glass")}}
}

func coding(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	if display != "" {
		c["display"] = display
	}
	return c
}

func concept(codings ...any) map[string]any {
	return map[string]any{"coding": codings}
}

// identifierRef is a Reference by identifier only, with the target's type
// if known.
func identifierRef(typ, system, value string) map[string]any {
	r := map[string]any{"identifier": map[string]any{"system": system, "value": value}}
	if typ != "" {
		r["type"] = typ
	}
	return r
}
