package records

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/node/fhir"
	"github.com/medledger/medledger/records/index"
)

// ErrOtherPerson: the document is about someone else than the person the ledger patient is
// bound to (binding.go).
var ErrOtherPerson = errors.New("another person")

// ImportedRecord is one record an import anchored, or (unchanged) found.
type ImportedRecord struct {
	ID           chain.Hash `json:"id"`
	ResourceType string     `json:"resourceType"`
	Version      uint64     `json:"version"`
	Height       uint64     `json:"height"`
}

// ImportOptions tune ImportDocument; the zero value imports with no links and no progress.
type ImportOptions struct {
	// Links are names the operator asserts are this patient's ("system|value",
	// "identifier=system|value" or "Patient/id", see ParseLink); they are added to the binding.
	Links []string
	// Progress, if set, hears of the import's phases (from the importing goroutine).
	Progress func(ImportProgress)
}

// ImportProgress is one step of an import: Phase "validated" (Done = Total = the document's
// entries), "sealed" (Done = Total = the records to anchor, sealed and stored), "anchored"
// (Done of Total records committed).
type ImportProgress struct {
	Phase string `json:"phase"`
	Done  int    `json:"done"`
	Total int    `json:"total"`
}

// ImportResult is what an import did: the record of every resource kept (created, a new
// version, or unchanged), in entry order, and the outcome of every entry.
type ImportResult struct {
	Records []ImportedRecord `json:"records"`
	Entries []EntryOutcome   `json:"entries"`
}

// ImportError is a refused import: Kind is ErrInvalidFHIR or ErrOtherPerson, Entries the
// outcome of every entry (the refused ones say why). Nothing was anchored.
type ImportError struct {
	Kind    error
	Entries []EntryOutcome
	msg     string
}

func (e *ImportError) Error() string { return e.Kind.Error() + ": " + e.msg }
func (e *ImportError) Unwrap() error { return e.Kind }

// Refused returns the refused entries' outcomes.
func (e *ImportError) Refused() []EntryOutcome {
	var out []EntryOutcome
	for _, o := range e.Entries {
		if o.Outcome == OutcomeRefused {
			out = append(out, o)
		}
	}
	return out
}

func newImportError(kind error, out []EntryOutcome) *ImportError {
	var parts []string
	n := 0
	for _, o := range out {
		if o.Outcome != OutcomeRefused {
			continue
		}
		n++
		if len(parts) < 3 {
			name := o.Resource
			if name == "" && o.Method != "" {
				name = o.Method + " " + o.URL
			}
			if o.Index >= 0 {
				name = fmt.Sprintf("entry %d (%s)", o.Index, name)
			}
			parts = append(parts, name+": "+o.Message)
		}
	}
	for i := range out {
		if out[i].Outcome == "" || out[i].Outcome == OutcomeCreated || out[i].Outcome == OutcomeUpdated || out[i].Outcome == OutcomeUnchanged {
			out[i].Outcome, out[i].Record, out[i].Version = OutcomeNotImported, "", 0
		}
	}
	msg := strings.Join(parts, "; ")
	if n > len(parts) {
		msg += fmt.Sprintf("; and %d more entries refused", n-len(parts))
	}
	return &ImportError{Kind: kind, Entries: out, msg: msg}
}

// Import is ImportDocument without options; it returns the records.
func (r *Service) Import(ctx context.Context, patient chain.Address, data []byte) ([]ImportedRecord, error) {
	res, err := r.ImportDocument(ctx, patient, data, ImportOptions{})
	if err != nil {
		return nil, err
	}
	return res.Records, nil
}

// planned is one kept resource of an import.
type planned struct {
	entry    int    // position in the document
	key      string // importKey
	existing index.FHIREntry
	found    bool // the key was imported before and its record is on the ledger
	latest   *state.RecordState
	newID    chain.Hash // the record id a new record or version gets
	assigned string     // the FHIR id given to a resource without one
}

// ImportDocument imports FHIR JSON for one patient: a resource, a Bundle of any type that
// carries resources (transaction, batch, collection, document, searchset, history, message) or
// NDJSON. Entries are judged one by one; any refused entry (invalid, a DELETE or GET request,
// about another person) refuses the whole import with an *ImportError listing every entry's
// outcome, and nothing is anchored.
//
// The resources about the patient are kept, and with them every resource they refer to
// (Practitioner, Organization, Medication, …), each as a record of this patient, so an export
// resolves their references; a PaymentNotice or PaymentReconciliation goes with the patient's
// claims it names (import_fin.go); other resources are skipped. A document that keeps nothing
// because its financial resources cannot be filed under the patient is refused as
// ErrNotPlaceable, each entry saying why. A kept resource imported before under
// the same key (importKey) is unchanged if its content is the same (nothing anchored) and
// becomes a new version of that record if not. Each resource is sealed to the patient, this
// provider and every provider the patient's consents cover, stored, anchored, and the import
// returns once the anchors commit.
func (r *Service) ImportDocument(ctx context.Context, patient chain.Address, data []byte, opts ImportOptions) (*ImportResult, error) {
	progress := func(phase string, done, total int) {
		if opts.Progress != nil {
			opts.Progress(ImportProgress{Phase: phase, Done: done, Total: total})
		}
	}
	var links []string
	for _, l := range opts.Links {
		n, err := ParseLink(l)
		if err != nil {
			return nil, err
		}
		links = append(links, n)
	}
	doc, err := r.fhir.ParseDocument(data)
	if doc == nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFHIR, err)
	}
	out := make([]EntryOutcome, len(doc.Entries))
	for i, e := range doc.Entries {
		out[i] = EntryOutcome{Index: e.Index, FullURL: e.FullURL, Method: e.Method, URL: e.URL}
		switch {
		case e.Resource != nil:
			out[i].Resource = e.Resource.Name()
		case e.Err != nil && e.Err.ResourceType != "":
			out[i].Resource = (&fhir.Error{Index: -1, ResourceType: e.Err.ResourceType, ID: e.Err.ID}).Resource()
		}
		if e.Err != nil {
			refuse(out, i, "%s", problemsText(e.Err))
		}
	}
	if err != nil {
		return nil, newImportError(ErrInvalidFHIR, out)
	}
	progress("validated", len(doc.Entries), len(doc.Entries))

	unlock := r.importLocks.lock(patient)
	defer unlock()
	bound, err := r.bindings.get(patient)
	if err != nil {
		return nil, err
	}
	if len(links) > 0 {
		// The values stay out of the log: identifiers are personal data.
		r.log.Info("import: the operator links names to the patient's binding", "patient", patient, "links", len(links))
	}
	names := bindDocument(doc, bound, links, func(n string) string { return r.names.name(patient, n) }, out)
	if names == nil || hasRefused(out) {
		if !hasRefused(out) {
			return nil, fmt.Errorf("%w: the document names no patient", ErrInvalidFHIR)
		}
		return nil, newImportError(ErrOtherPerson, out)
	}
	keep := keepEntries(doc, out, func(name string) bool {
		_, ok, err := r.idx.FHIR(patient, r.names.name(patient, name))
		return err == nil && ok
	})
	shared := map[string]int{}
	for _, e := range doc.Entries {
		if e.FullURL != "" {
			shared[e.FullURL]++
		}
	}
	var plan []*planned
	byKey := map[string]int{}
	for i, e := range doc.Entries {
		if !keep[i] {
			continue
		}
		k := importKey(e, shared)
		if j, dup := byKey[k]; dup {
			if string(doc.Entries[j].Resource.JSON) == string(e.Resource.JSON) {
				out[i].Outcome, out[i].Message = OutcomeSkipped, fmt.Sprintf("the same resource as entry %d", doc.Entries[j].Index)
				continue
			}
			refuse(out, i, "entry %d is imported under the same key %q with other content", doc.Entries[j].Index, k)
			continue
		}
		byKey[k] = i
		plan = append(plan, &planned{entry: i, key: k})
	}
	if hasRefused(out) {
		return nil, newImportError(ErrInvalidFHIR, out)
	}
	if len(plan) == 0 {
		if anyOutcome(out, unplacedMessage) {
			return nil, newImportError(ErrNotPlaceable, refuseUnplaced(out))
		}
		return nil, newImportError(ErrInvalidFHIR, refuseAll(out, "nothing in the document is about a patient"))
	}
	if err := r.lookUp(ctx, patient, plan, out); err != nil {
		return nil, err
	}
	if hasRefused(out) {
		return nil, newImportError(ErrInvalidFHIR, out)
	}
	// Each resource is stored on its own: references by urn:uuid fullUrl become Type/id, and a
	// resource without an id is named by its first version's record id (kept across versions).
	resources := make([]fhir.Resource, len(plan))
	for i, p := range plan {
		resources[i] = *doc.Entries[p.entry].Resource
	}
	resources, err = fhir.Standalone(resources, func(i int) string { return plan[i].assigned })
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidFHIR, err)
	}
	var recs []sealedRecord
	var plain [][]byte
	var changed []*planned
	contents := make([][32]byte, len(plan))
	for i, p := range plan {
		contents[i] = sha256.Sum256(resources[i].JSON)
		o := &out[p.entry]
		if p.found && p.latest.ID == p.existing.Latest && contents[i] == p.existing.Content {
			o.Outcome, o.Record, o.Version = OutcomeUnchanged, p.latest.ID.String(), p.latest.RecVersion
			continue
		}
		a := chain.RecordAnchor{ID: p.newID, Patient: patient, ResourceType: resources[i].ResourceType, Version: 1}
		o.Outcome = OutcomeCreated
		if p.found {
			a.Version, a.Supersedes = p.latest.RecVersion+1, p.latest.ID
			o.Outcome = OutcomeUpdated
		}
		o.Record, o.Version = p.newID.String(), a.Version
		recs = append(recs, sealedRecord{anchor: a})
		plain = append(plain, resources[i].JSON)
		changed = append(changed, p)
	}
	var anchored []ImportedRecord
	if len(recs) > 0 {
		anchored, err = r.sealAndAnchor(ctx, recs, plain, func(done int) {
			if done == 0 {
				progress("sealed", len(recs), len(recs))
			} else {
				progress("anchored", done, len(recs))
			}
		})
		if err != nil {
			return nil, err
		}
		keys := make(map[string]index.FHIREntry, len(changed))
		for i, p := range plan {
			if out[p.entry].Outcome == OutcomeUnchanged {
				continue
			}
			e := index.FHIREntry{Root: p.newID, Latest: p.newID, Content: contents[i]}
			if p.found {
				e.Root = p.existing.Root
			}
			if doc.Entries[p.entry].Resource.ID == "" {
				e.AssignedID = p.assigned
			}
			keys[r.names.name(patient, p.key)] = e
		}
		if err := r.idx.PutFHIR(patient, keys); err != nil {
			// The records are anchored; only the memory of their keys is lost (a re-import
			// makes new records).
			r.log.Error("import: FHIR keys not kept", "patient", patient, "err", err)
		}
	}
	if err := r.bindings.add(patient, names); err != nil {
		r.log.Error("import: patient binding not kept", "patient", patient, "err", err)
	}
	res := &ImportResult{Entries: out}
	heights := make(map[chain.Hash]uint64, len(anchored))
	for _, a := range anchored {
		heights[a.ID] = a.Height
	}
	for _, p := range plan {
		o := out[p.entry]
		rec := ImportedRecord{ResourceType: doc.Entries[p.entry].Resource.ResourceType, Version: o.Version}
		if o.Outcome == OutcomeUnchanged {
			rec.ID, rec.Height = p.latest.ID, p.latest.AnchoredHeight
		} else {
			rec.ID, rec.Height = p.newID, heights[p.newID]
		}
		res.Records = append(res.Records, rec)
	}
	return res, nil
}

// lookUp finds, for each planned resource, the record it was imported as before (following
// amendments to the latest version on the ledger) and draws the ids of new records and versions.
// A key whose record never reached the ledger is imported afresh; an erased one is refused.
func (r *Service) lookUp(ctx context.Context, patient chain.Address, plan []*planned, out []EntryOutcome) error {
	for _, p := range plan {
		e, ok, err := r.idx.FHIR(patient, r.names.name(patient, p.key))
		if err != nil {
			return err
		}
		p.existing, p.found = e, ok
		if _, err := rand.Read(p.newID[:]); err != nil {
			return err
		}
	}
	return r.query(ctx, func(view state.View) error {
		for _, p := range plan {
			if !p.found {
				p.assigned = p.newID.String()
				continue
			}
			rec, err := state.Record(view, p.existing.Latest)
			if err != nil {
				return err
			}
			for steps := 0; rec != nil && !rec.SupersededBy.IsZero() && steps < 1<<16; steps++ {
				if rec, err = state.Record(view, rec.SupersededBy); err != nil {
					return err
				}
			}
			switch {
			case rec == nil || rec.Patient != patient:
				p.found = false // anchored by an import that did not commit
				p.assigned = p.newID.String()
			case rec.Erased:
				refuse(out, p.entry, "%s was imported before as record %s, which the patient erased; it is not imported again", p.key, rec.ID)
			default:
				p.latest = rec
				p.assigned = p.existing.AssignedID
				if p.assigned == "" {
					p.assigned = p.existing.Root.String()
				}
			}
		}
		return nil
	})
}

func hasRefused(out []EntryOutcome) bool {
	for _, o := range out {
		if o.Outcome == OutcomeRefused {
			return true
		}
	}
	return false
}

func refuseAll(out []EntryOutcome, msg string) []EntryOutcome {
	for i := range out {
		if out[i].Outcome == "" || out[i].Outcome == OutcomeSkipped {
			refuse(out, i, "%s", msg)
		}
	}
	return out
}

// problemsText renders an entry's problems without the resource name (the outcome has it).
func problemsText(e *fhir.Error) string {
	parts := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		if p.Path != "" {
			parts[i] = p.Path + ": " + p.Message
		} else {
			parts[i] = p.Message
		}
	}
	return strings.Join(parts, "; ")
}

// keyedLocks serializes imports per patient (the binding and the FHIR keys are read, then
// written after the anchors commit). Entries exist only while held, so the map is bounded by the
// imports in flight.
type keyedLocks struct {
	mu sync.Mutex
	m  map[chain.Address]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedLocks) lock(p chain.Address) func() {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[chain.Address]*keyedLock{}
	}
	l := k.m[p]
	if l == nil {
		l = &keyedLock{}
		k.m[p] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, p)
		}
		k.mu.Unlock()
	}
}
