package records

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/medledger/medledger/node/fhir"
)

// Financial resources outside the patient compartment.
//
// Account, ChargeItem, Claim, ClaimResponse, Coverage, ExplanationOfBenefit and Invoice are in
// the R4 Patient compartment and are kept like any resource about the patient; a Contract names
// its patient in subject (MentionedPatients), and the payer Organization a Coverage or Claim
// names is a companion like any resource a kept one refers to. PaymentNotice and
// PaymentReconciliation belong to no compartment: they name the claims they pay. One is kept
// with the claims it names when every claim or claim response it names is this patient's (an
// entry of the document kept for the patient, or a resource this node imported for the patient
// before) and it names at least one. A payer's reconciliation often covers several patients'
// claims: filed under one patient it would show that patient the others' payments, so one that
// also names a claim the node cannot tie to the patient (by identifier, by an absolute URL, or
// one imported for nobody here) is not kept, and its entry says why; so is a compartment type
// whose patient element names no patient (unfiledMessage). An import that keeps nothing else is
// refused as ErrNotPlaceable, with those reasons.

// followerPaths are, per type, the elements that name the claims a payment resource is about.
// PaymentNotice.payment (the reconciliation it belongs to) is not among them: a notice shows its
// own amount only, whatever else the reconciliation pays.
var followerPaths = map[string][]string{
	"PaymentNotice":         {"request", "response"},
	"PaymentReconciliation": {"detail.request", "detail.response"},
}

// ErrNotPlaceable: the document is valid FHIR, but nothing in it can be filed under the patient
// (a payment that names none of the patient's claims, or also other claims). errors.Is matches
// ErrInvalidFHIR too, so callers that answer refused imports alike (the API's 422) keep doing so.
var ErrNotPlaceable error = notPlaceable{}

type notPlaceable struct{}

func (notPlaceable) Error() string        { return "not placeable with the patient" }
func (notPlaceable) Is(target error) bool { return target == ErrInvalidFHIR }

func isFollower(r *fhir.Resource) bool { return r != nil && followerPaths[r.ResourceType] != nil }

// unplacedMessage reports whether an outcome says why a financial resource is not kept.
func unplacedMessage(o EntryOutcome) bool {
	return strings.HasPrefix(o.Message, followerPrefix) || strings.HasPrefix(o.Message, unfiledPrefix)
}

// unfiledPrefix starts the message of a financial resource of the compartment (or a Contract)
// that names no patient where its patient belongs.
const unfiledPrefix = "not filed under a patient: "

// ownerPaths are the elements that name the person such a resource is about.
var ownerPaths = map[string]string{
	"Account": "subject", "ChargeItem": "subject", "Claim": "patient", "ClaimResponse": "patient",
	"Contract": "subject", "Coverage": "beneficiary", "ExplanationOfBenefit": "patient", "Invoice": "subject",
}

// unfiledMessage explains why a financial resource about nobody is not kept ("" for another
// type).
func unfiledMessage(r *fhir.Resource) string {
	path, ok := ownerPaths[r.ResourceType]
	if !ok {
		return ""
	}
	var obj map[string]any
	if err := json.Unmarshal(r.JSON, &obj); err != nil {
		return ""
	}
	var named []string
	for _, ref := range referenceObjects(obj, []string{path}) {
		switch s, _ := ref["reference"].(string); {
		case s != "":
			named = append(named, s)
		case ref["identifier"] != nil:
			id := asMap(ref["identifier"])
			named = append(named, fmt.Sprintf("identifier %s|%s", str(id, "system"), str(id, "value")))
		case ref["display"] != nil:
			named = append(named, fmt.Sprintf("only the text %q", str(ref, "display")))
		}
	}
	what := "nothing"
	if len(named) > 0 {
		what = strings.Join(named, ", ")
	}
	return fmt.Sprintf("%sa %s is filed under the patient its %s names, and it names %s, neither a Patient of the document nor Patient/<id>: import it with its Patient, or name the patient by reference",
		unfiledPrefix, r.ResourceType, path, what)
}

// followerPrefix starts every message that explains why a payment resource is not kept.
const followerPrefix = "not kept with this patient's claims: "

// relativeName matches "Type/id", optionally versioned; the version is dropped.
var relativeName = regexp.MustCompile(`^([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$`)

// placeFollower decides whether payment resource i goes with the patient's kept entries; when it
// does not, it says why. at maps an entry's fullUrl and Type/id to its position; known reports
// whether this node imported "Type/id" for the patient before.
func placeFollower(doc *fhir.Document, i int, keep []bool, at map[string]int, known func(string) bool) (bool, string) {
	r := doc.Entries[i].Resource
	var obj map[string]any
	if err := json.Unmarshal(r.JSON, &obj); err != nil {
		return false, followerPrefix + "its JSON does not decode: " + err.Error()
	}
	mine := 0
	var foreign []string
	for _, path := range followerPaths[r.ResourceType] {
		for _, ref := range referenceObjects(obj, strings.Split(path, ".")) {
			s, _ := ref["reference"].(string)
			if s == "" {
				if id, ok := ref["identifier"].(map[string]any); ok {
					system, _ := id["system"].(string)
					value, _ := id["value"].(string)
					foreign = append(foreign, fmt.Sprintf("%s by identifier %s|%s", path, system, value))
				}
				continue // a display alone names nothing
			}
			if j, ok := at[s]; ok {
				if keep[j] {
					mine++
				} else {
					foreign = append(foreign, fmt.Sprintf("%s %s, an entry that is not this patient's", path, s))
				}
				continue
			}
			if m := relativeName.FindStringSubmatch(s); m != nil {
				if j, ok := at[m[1]]; ok && keep[j] {
					mine++
					continue
				}
				if known(m[1]) {
					mine++
					continue
				}
			}
			foreign = append(foreign, fmt.Sprintf("%s %s, which this node did not import for this patient", path, s))
		}
	}
	switch {
	case len(foreign) > 0:
		more := ""
		if len(foreign) > 3 {
			more = fmt.Sprintf(" and %d more", len(foreign)-3)
			foreign = foreign[:3]
		}
		return false, fmt.Sprintf("%sa %s is filed with the claims it names when all of them are this patient's, and it names %s%s: a payment that may cover other patients' claims is not filed under one patient",
			followerPrefix, r.ResourceType, strings.Join(foreign, "; "), more)
	case mine == 0:
		return false, fmt.Sprintf("%sa %s is filed with the claim it is about, and it names none (%s): import it together with that claim, or after it",
			followerPrefix, r.ResourceType, strings.Join(followerPaths[r.ResourceType], ", "))
	}
	return true, ""
}

// referenceObjects collects the Reference objects at an element path; arrays are followed at
// every step.
func referenceObjects(v any, steps []string) []map[string]any {
	switch x := v.(type) {
	case []any:
		var out []map[string]any
		for _, e := range x {
			out = append(out, referenceObjects(e, steps)...)
		}
		return out
	case map[string]any:
		if len(steps) == 0 {
			return []map[string]any{x}
		}
		return referenceObjects(x[steps[0]], steps[1:])
	}
	return nil
}

// entryNames maps each entry's fullUrl and Type/id to its position in the document.
func entryNames(doc *fhir.Document) map[string]int {
	at := make(map[string]int, 2*len(doc.Entries))
	for i, e := range doc.Entries {
		if e.Resource == nil {
			continue
		}
		if e.FullURL != "" {
			at[e.FullURL] = i
		}
		if e.Resource.ID != "" {
			at[e.Resource.ResourceType+"/"+e.Resource.ID] = i
		}
	}
	return at
}

func anyOutcome(out []EntryOutcome, f func(EntryOutcome) bool) bool {
	for _, o := range out {
		if f(o) {
			return true
		}
	}
	return false
}

// refuseUnplaced turns the financial resources that were not kept into refusals (with their own
// message), for an import that keeps nothing else.
func refuseUnplaced(out []EntryOutcome) []EntryOutcome {
	for i := range out {
		if out[i].Outcome == OutcomeSkipped && unplacedMessage(out[i]) {
			out[i].Outcome = OutcomeRefused
		}
	}
	return out
}
