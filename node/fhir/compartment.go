package fhir

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Patient compartment: the approximation.
//
// The R4 compartment definition lists, per resource type, search parameter
// names ("subject", "patient", "performer", …). A search parameter is defined
// by a FHIRPath expression; this package does not evaluate FHIRPath. Instead:
//
//   - A parameter whose name (kebab-case turned camelCase: "policy-holder" →
//     policyHolder) is a top-level element of type Reference maps to that
//     element.
//   - Every other parameter maps to the element path of its R4 search
//     parameter expression, written out in paramPaths below (for example
//     Condition "patient" → subject, Appointment "actor" → participant.actor).
//   - The "where(resolve() is Patient)" filters of the expressions are
//     replaced by only counting references that point to a Patient:
//     "Patient/<id>" (optionally versioned) or a Bundle entry whose resource
//     is a Patient.
//
// A Patient belongs to its own compartment. Resources whose type has no
// parameters (Medication, Practitioner, Organization, …) belong to no
// patient compartment. Extensions and contained resources are not searched.
// TestCompartmentMapping checks that every parameter of the definition maps
// to a path that ends at a Reference in the schema.

// paramPaths gives element paths for compartment parameters whose name is
// not a top-level Reference element, from the R4 search parameter
// expressions.
var paramPaths = map[string]map[string]string{
	"Appointment":              {"actor": "participant.actor"},
	"AuditEvent":               {"patient": "entity.what"},
	"Basic":                    {"patient": "subject"},
	"CarePlan":                 {"patient": "subject", "performer": "activity.detail.performer"},
	"CareTeam":                 {"patient": "subject", "participant": "participant.member"},
	"Claim":                    {"payee": "payee.party"},
	"Composition":              {"attester": "attester.party"},
	"Condition":                {"patient": "subject"},
	"EnrollmentRequest":        {"subject": "candidate"},
	"ExplanationOfBenefit":     {"payee": "payee.party"},
	"Flag":                     {"patient": "subject"},
	"Goal":                     {"patient": "subject"},
	"Group":                    {"member": "member.entity"},
	"ImagingStudy":             {"patient": "subject"},
	"Invoice":                  {"patient": "subject"},
	"MeasureReport":            {"patient": "subject"},
	"MedicationAdministration": {"patient": "subject", "performer": "performer.actor"},
	"MedicationDispense":       {"patient": "subject"},
	"Patient":                  {"link": "link.other"},
	"Person":                   {"patient": "link.target"},
	"Procedure":                {"patient": "subject", "performer": "performer.actor"},
	"Provenance":               {"patient": "target"},
	"RequestGroup":             {"participant": "action.participant"},
	"SupplyRequest":            {"subject": "deliverTo"},
	"Task":                     {"patient": "for"},
}

// subjectPaths are, for the financial types whose compartment parameters name several roles,
// the elements that name the person the resource is about; the others (subscriber, policy
// holder, payor, payee, recipient) may be another patient who pays.
var subjectPaths = map[string][]string{
	"Coverage":             {"beneficiary"},
	"Claim":                {"patient"},
	"ExplanationOfBenefit": {"patient"},
	"Invoice":              {"subject"},
}

// subjectRefs returns the sorted, distinct patients at the type's subjectPaths, nil for a type
// without them.
func subjectRefs(typ string, obj map[string]any, resolve func(string) string) []string {
	paths, ok := subjectPaths[typ]
	if !ok {
		return nil
	}
	set := map[string]bool{}
	for _, p := range paths {
		for _, ref := range referencesAt(obj, strings.Split(p, ".")) {
			if id := resolve(ref); id != "" {
				set[id] = true
			}
		}
	}
	out := make([]string, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// compartmentPaths turns the compartment definition into element paths per
// resource type, checking each against the schema model.
func compartmentPaths(raw []byte, model map[string]map[string]string) (map[string][][]string, error) {
	var def struct {
		ResourceType string `json:"resourceType"`
		Code         string `json:"code"`
		Resource     []struct {
			Code  string   `json:"code"`
			Param []string `json:"param"`
		} `json:"resource"`
	}
	if err := json.Unmarshal(raw, &def); err != nil {
		return nil, fmt.Errorf("fhir: embedded compartment definition: %w", err)
	}
	if def.ResourceType != "CompartmentDefinition" || def.Code != "Patient" {
		return nil, fmt.Errorf("fhir: embedded compartment definition is not the Patient compartment")
	}
	out := make(map[string][][]string)
	for _, r := range def.Resource {
		for _, p := range r.Param {
			path, ok := paramPaths[r.Code][p]
			if !ok {
				path = camelCase(p)
			}
			steps := strings.Split(path, ".")
			if got := elementType(model, r.Code, steps); got != "Reference" {
				return nil, fmt.Errorf("fhir: compartment param %s.%s: path %s leads to %q, not a Reference", r.Code, p, path, got)
			}
			out[r.Code] = append(out[r.Code], steps)
		}
	}
	return out, nil
}

// elementType follows an element path through the schema model and returns
// the definition name it ends at, or "" if the path does not exist.
func elementType(model map[string]map[string]string, typ string, steps []string) string {
	for _, s := range steps {
		next, ok := model[typ][s]
		if !ok {
			return ""
		}
		typ = next
	}
	return typ
}

func camelCase(s string) string {
	parts := strings.Split(s, "-")
	for i := 1; i < len(parts); i++ {
		if parts[i] != "" {
			parts[i] = strings.ToUpper(parts[i][:1]) + parts[i][1:]
		}
	}
	return strings.Join(parts, "")
}

// referencesAt collects the Reference.reference strings found at an element
// path in a decoded resource. Arrays are followed at every step.
func referencesAt(v any, steps []string) []string {
	if len(steps) == 0 {
		switch x := v.(type) {
		case map[string]any:
			if s, ok := x["reference"].(string); ok {
				return []string{s}
			}
		case []any:
			var out []string
			for _, e := range x {
				out = append(out, referencesAt(e, nil)...)
			}
			return out
		}
		return nil
	}
	switch x := v.(type) {
	case map[string]any:
		return referencesAt(x[steps[0]], steps[1:])
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, referencesAt(e, steps)...)
		}
		return out
	}
	return nil
}

// patientRefs returns the sorted, distinct patient ids whose compartment the
// resource belongs to. self names a Patient resource itself (its id, or the
// fullUrl of a Patient entry without id). resolve maps a reference string to the Patient it
// designates ("" if it designates none).
func (v *Validator) patientRefs(typ, self string, obj map[string]any, resolve func(string) string) []string {
	set := map[string]bool{}
	if typ == "Patient" && self != "" {
		set[self] = true
	}
	for _, steps := range v.compartment[typ] {
		for _, ref := range referencesAt(obj, steps) {
			if p := resolve(ref); p != "" {
				set[p] = true
			}
		}
	}
	if len(set) == 0 {
		return nil
	}
	out := make([]string, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// AssignPatient checks that every resource belongs to the compartment of the
// patient with the given id: a Patient resource must have exactly that id,
// every other resource must have patientID among its PatientRefs. The first
// resource that does not is named in the returned *Error; resources of types
// outside the Patient compartment (Practitioner, Medication, …) are refused
// too, so nothing that is not the patient's own record is imported under
// their name.
func AssignPatient(resources []Resource, patientID string) error {
	if patientID == "" {
		return fmt.Errorf("fhir: assign: empty patient id")
	}
	for _, r := range resources {
		e := &Error{Index: r.Index, ResourceType: r.ResourceType, ID: r.ID}
		if r.ResourceType == "Patient" {
			if r.ID != patientID {
				e.Problems = []Problem{{Path: "/id", Message: fmt.Sprintf("is another patient (want Patient/%s)", patientID)}}
				return e
			}
			continue
		}
		if !slices.Contains(r.PatientRefs, patientID) {
			msg := fmt.Sprintf("not in the compartment of Patient/%s", patientID)
			switch {
			case len(r.PatientRefs) > 0:
				msg += fmt.Sprintf(" (belongs to Patient/%s)", strings.Join(r.PatientRefs, ", Patient/"))
			default:
				msg += " (refers to no patient)"
			}
			e.Problems = []Problem{{Message: msg}}
			return e
		}
	}
	return nil
}
