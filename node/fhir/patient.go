package fhir

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// fhirID is the syntax of a FHIR logical id.
var fhirID = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)

// SinglePatient returns the id of the one patient all the resources belong
// to, for an importer to pass on to AssignPatient.
//
// A Patient resource stands for its own id (its links to other patients do
// not count); every other resource stands for its PatientRefs. The patient is
// the one id that every resource stands for. So a resource that also refers
// to a second patient (an AllergyIntolerance recorded by a parent, say) is
// fine as long as the other resources single the patient out.
//
// The error is an *Error naming the first offending resource: one that
// refers to no patient (a Practitioner, a Medication, an Observation about a
// Group), a Patient without id, one whose patients are not those of the
// resources before it, or, when every resource refers to the same two or
// more patients, the first resource. An empty list is an error too.
func SinglePatient(resources []Resource) (string, error) {
	if len(resources) == 0 {
		return "", newError(-1, "", "", "", "no resources, so no patient")
	}
	var common []string // the ids every resource so far stands for, sorted
	for i, r := range resources {
		e := &Error{Index: r.Index, ResourceType: r.ResourceType, ID: r.ID}
		var own []string
		switch {
		case r.ResourceType == "Patient" && r.ID == "":
			e.Problems = []Problem{{Path: "/id", Message: "a Patient without id: its patient id is unknown"}}
			return "", e
		case r.ResourceType == "Patient":
			own = []string{r.ID}
		case len(r.PatientRefs) == 0:
			e.Problems = []Problem{{Message: "refers to no patient"}}
			return "", e
		default:
			own = r.PatientRefs
		}
		if i == 0 {
			common = slices.Clone(own)
			continue
		}
		next := slices.DeleteFunc(slices.Clone(common), func(p string) bool { return !slices.Contains(own, p) })
		if len(next) == 0 {
			e.Problems = []Problem{{Message: fmt.Sprintf("belongs to %s, but the resources before it belong to %s",
				patientList(own, " and "), patientList(common, " or "))}}
			return "", e
		}
		common = next
	}
	first := resources[0]
	e := &Error{Index: first.Index, ResourceType: first.ResourceType, ID: first.ID}
	if len(common) > 1 {
		e.Problems = []Problem{{Message: fmt.Sprintf("every resource belongs to %s: cannot tell whose record this is",
			patientList(common, " and "))}}
		return "", e
	}
	if !fhirID.MatchString(common[0]) {
		// Only a Patient entry without id is known by its fullUrl, and one
		// that is among the resources is refused above.
		e.Problems = []Problem{{Message: fmt.Sprintf("refers to its patient as %q, not by a Patient id", common[0])}}
		return "", e
	}
	return common[0], nil
}

// patientList renders ids as "Patient/a", "Patient/a and Patient/b", ….
func patientList(ids []string, sep string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = "Patient/" + id
	}
	if len(out) <= 2 {
		return strings.Join(out, sep)
	}
	return strings.Join(out[:len(out)-1], ", ") + sep + out[len(out)-1]
}
