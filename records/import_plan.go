package records

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/medledger/medledger/node/fhir"
)

// Outcomes of an import's entries.
const (
	OutcomeCreated   = "created"   // a new record
	OutcomeUpdated   = "updated"   // a new version of the record imported before under the same key
	OutcomeUnchanged = "unchanged" // the same resource as the record's current version: nothing anchored
	OutcomeSkipped   = "skipped"   // not about the patient and not referred to: not kept
	OutcomeRefused   = "refused"   // see Message; nothing of the import is anchored
	// OutcomeNotImported: a valid entry of an import refused for its other entries.
	OutcomeNotImported = "not-imported"
)

// EntryOutcome is what an import did with one entry of the document.
type EntryOutcome struct {
	// Index is the entry's position in the Bundle (the line among the non-blank ones in
	// NDJSON), -1 for a single resource.
	Index   int    `json:"index"`
	FullURL string `json:"fullUrl,omitempty"`
	// Method and URL are the entry's request, if it had one.
	Method string `json:"method,omitempty"`
	URL    string `json:"url,omitempty"`
	// Resource is "Type/id" as the document gave it (or the type alone).
	Resource string `json:"resource,omitempty"`
	Outcome  string `json:"outcome"`
	// Record and Version are the record holding the resource now (created, updated,
	// unchanged).
	Record  string `json:"record,omitempty"`
	Version uint64 `json:"version,omitempty"`
	Message string `json:"message,omitempty"`
}

// aboutPatients are the patients a resource is about: its subjects (fhir.Resource.SubjectRefs),
// else those whose compartment it belongs to, else, for a resource outside the compartment
// definition (a Device of R4's definition, say), the patients its references name.
func aboutPatients(r *fhir.Resource) []string {
	if len(r.SubjectRefs) > 0 {
		// A Coverage is the beneficiary's, a Claim the patient's, even when a parent or
		// guarantor who is another patient subscribes or pays.
		return r.SubjectRefs
	}
	if len(r.PatientRefs) > 0 {
		return r.PatientRefs
	}
	return r.MentionedPatients
}

// refuse marks outcome i refused with a message.
func refuse(out []EntryOutcome, i int, format string, args ...any) {
	out[i].Outcome = OutcomeRefused
	out[i].Message = fmt.Sprintf(format, args...)
}

// patientNames is every name a Patient entry goes by: its id (or fullUrl, lacking one) and its
// identifiers.
func patientNames(r *fhir.Resource) []string {
	var out []string
	switch {
	case r.ID != "":
		out = append(out, r.ID)
	case r.FullURL != "":
		out = append(out, r.FullURL)
	}
	for _, id := range r.Identifiers {
		out = append(out, "?identifier="+id)
	}
	return out
}

// bindDocument checks that the document is about the one person the ledger patient is bound to
// (bound, plus the operator's links, both as keyed hashes: hash turns a name into one) and
// returns the binding after this import. Entries about someone else are marked refused in out;
// nil means the person could not be told.
func bindDocument(doc *fhir.Document, bound, links []string, hash func(string) string, out []EntryOutcome) []string {
	set := map[string]bool{}
	for _, n := range bound {
		set[n] = true
	}
	for _, n := range links {
		set[hash(n)] = true
	}
	in := func(names []string) bool {
		return slices.ContainsFunc(names, func(n string) bool { return set[hash(n)] })
	}
	addAll := func(names []string) {
		for _, n := range names {
			set[hash(n)] = true
		}
	}
	var patients []int
	for i, e := range doc.Entries {
		if e.Resource != nil && e.Resource.ResourceType == "Patient" {
			patients = append(patients, i)
		}
	}
	if len(set) == 0 {
		// Not bound yet: the document's one Patient, or the one patient its resources name.
		switch {
		case len(patients) == 1:
			addAll(patientNames(doc.Entries[patients[0]].Resource))
		case len(patients) > 1:
			var names []string
			for _, i := range patients {
				names = append(names, doc.Entries[i].Name())
			}
			for _, i := range patients {
				refuse(out, i, "the document holds %d Patients (%s) and this ledger patient is not bound to any FHIR Patient yet: link the one it is (link=system|value or link=Patient/id)",
					len(patients), strings.Join(names, ", "))
			}
			return nil
		default:
			named := map[string]bool{}
			for _, e := range doc.Entries {
				if e.Resource != nil {
					for _, p := range aboutPatients(e.Resource) {
						named[p] = true
					}
				}
			}
			if len(named) == 1 {
				addAll(sortedKeys(named))
			} else if len(named) > 1 {
				desc := describeNames(sortedKeys(named))
				for i, e := range doc.Entries {
					if e.Resource != nil && len(aboutPatients(e.Resource)) > 0 {
						refuse(out, i, "the resources name %d patients (%s) and this ledger patient is not bound to any FHIR Patient yet: link the one it is (link=Patient/id or link=system|value)", len(named), desc)
					}
				}
				return nil
			}
		}
	}
	// A Patient that shares a name with the binding is the person; it brings its other names.
	matched := map[int]bool{}
	for changed := true; changed; {
		changed = false
		for _, i := range patients {
			if matched[i] {
				continue
			}
			if names := patientNames(doc.Entries[i].Resource); in(names) {
				matched[i], changed = true, true
				addAll(names)
			}
		}
	}
	bindingDesc := fmt.Sprintf("it shares none of the %d ids and identifiers this practice knows the patient by", len(set))
	for _, i := range patients {
		if !matched[i] {
			refuse(out, i, "another person: %s is not the Patient this ledger patient is bound to (%s); if it is the same person, link one of its identifiers (link=system|value)",
				describeNames(patientNames(doc.Entries[i].Resource)), bindingDesc)
		}
	}
	for i, e := range doc.Entries {
		if e.Resource == nil || e.Resource.ResourceType == "Patient" || out[i].Outcome == OutcomeRefused {
			continue
		}
		for _, p := range aboutPatients(e.Resource) {
			if !set[hash(p)] {
				refuse(out, i, "refers to %s, another person than the Patient this ledger patient is bound to; if it is the same person, link it (link=…)", describeName(p))
				break
			}
		}
	}
	return sortedKeys(set)
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// keepEntries decides which resources an import keeps: every resource about the patient (a
// Patient, or one in the patient's compartment), and every other resource (Practitioner,
// Organization, Location, Medication, a Device without patient, …) that a kept resource refers
// to, directly or through another kept one. Payment resources (PaymentNotice,
// PaymentReconciliation) are kept only with the patient's claims (placeFollower; known reports
// whether this node imported a "Type/id" for the patient before). The rest are marked skipped in
// out, a payment resource with the reason.
func keepEntries(doc *fhir.Document, out []EntryOutcome, known func(string) bool) []bool {
	keep := make([]bool, len(doc.Entries))
	pos := make(map[int]int, len(doc.Entries)) // entry Index → position
	var queue []int
	for i, e := range doc.Entries {
		pos[e.Index] = i
		if e.Resource != nil && !isFollower(e.Resource) && (e.Resource.ResourceType == "Patient" || len(aboutPatients(e.Resource)) > 0) {
			keep[i] = true
			queue = append(queue, i)
		}
	}
	closure := func(queue []int) {
		for len(queue) > 0 {
			i := queue[0]
			queue = queue[1:]
			for _, ref := range doc.Entries[i].Resource.Refs {
				// A payment resource is never a companion: it decides for itself below.
				j, ok := pos[ref]
				if ok && !keep[j] && doc.Entries[j].Resource != nil && !isFollower(doc.Entries[j].Resource) {
					keep[j] = true
					queue = append(queue, j)
				}
			}
		}
	}
	closure(queue)
	why := map[int]string{}
	if known == nil {
		known = func(string) bool { return false }
	}
	at := entryNames(doc)
	for changed := true; changed; { // a notice may name a reconciliation placed in this pass
		changed = false
		for i, e := range doc.Entries {
			if keep[i] || !isFollower(e.Resource) || out[i].Outcome != "" {
				continue
			}
			ok, msg := placeFollower(doc, i, keep, at, known)
			if !ok {
				why[i] = msg
				continue
			}
			delete(why, i)
			keep[i], changed = true, true
			closure([]int{i})
		}
	}
	for i, e := range doc.Entries {
		if e.Resource != nil && !keep[i] && out[i].Outcome == "" {
			out[i].Outcome = OutcomeSkipped
			out[i].Message = "about no patient, and no resource about the patient refers to it: not kept"
			if msg, ok := why[i]; ok {
				out[i].Message = msg
			} else if msg := unfiledMessage(e.Resource); msg != "" {
				out[i].Message = msg
			}
		}
	}
	return keep
}

// importKey is how the node remembers a kept resource across imports: "Type/id"; for a resource
// without id, the conditional URL of its request ("Observation?code=…", as HAPI FHIR matches a
// conditional update), else its fullUrl when no other entry shares it, else its content.
func importKey(e fhir.Entry, sharedURL map[string]int) string {
	r := e.Resource
	switch {
	case r.ID != "":
		return r.ResourceType + "/" + r.ID
	case (e.Method == "PUT" || e.Method == "POST") && strings.Contains(e.URL, "?"):
		return strings.TrimPrefix(e.URL, "/")
	case e.FullURL != "" && sharedURL[e.FullURL] == 1:
		return r.ResourceType + " " + e.FullURL
	}
	sum := sha256.Sum256(r.JSON)
	return r.ResourceType + " #" + hex.EncodeToString(sum[:])
}
