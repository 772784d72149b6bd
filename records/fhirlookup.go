package records

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
)

// Look-ups for the FHIR REST face (node/fhirapi*.go): which ledger patient a FHIR name is, which
// record holds a FHIR Type/id, and a record's versions. They read only what this practice keeps
// itself (the patient bindings, the import's Type/id keys) and the ledger's metadata; contents
// are read with Read alone, so consent and audit stay where they are.

// MaxLookupPatients bounds the patients a look-up by FHIR name walks: the bindings and Type/id
// keys are keyed per patient (so that no name is kept in clear), so finding a name means trying
// each patient this node imported for. Past the bound the look-up fails rather than slow every
// request down; a client then names the ledger patient.
const MaxLookupPatients = 100_000

// maxVersions bounds the versions Versions walks (a record amended more often is refused).
const maxVersions = 1000

// ErrAmbiguous: a FHIR name denotes more than one ledger patient or record at this node.
var ErrAmbiguous = errors.New("ambiguous")

// boundPatients lists the patients this node holds a binding for (those it imported for).
func (r *Service) boundPatients() ([]chain.Address, error) {
	ents, err := os.ReadDir(r.bindings.dir)
	if err != nil {
		return nil, fmt.Errorf("records: bindings: %w", err)
	}
	var out []chain.Address
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || e.IsDir() {
			continue
		}
		p, err := chain.ParseAddress(name)
		if err != nil {
			continue // a temporary file of add
		}
		if len(out) == MaxLookupPatients {
			return nil, fmt.Errorf("%w: this node holds more than %d patients: name the ledger patient", ErrBadRequest, MaxLookupPatients)
		}
		out = append(out, p)
	}
	return out, nil
}

// PatientsNamed returns the ledger patients whose binding holds name: a FHIR Patient id as
// imported ("pat-1") or an identifier ("?identifier=system|value", see ParseLink).
func (r *Service) PatientsNamed(name string) ([]chain.Address, error) {
	ps, err := r.boundPatients()
	if err != nil {
		return nil, err
	}
	var out []chain.Address
	for _, p := range ps {
		names, err := r.bindings.get(p)
		if err != nil {
			return nil, err
		}
		if slices.Contains(names, r.names.name(p, name)) {
			out = append(out, p)
		}
	}
	return out, nil
}

// FHIRMatch is the record holding a resource this node imported under a FHIR Type/id.
type FHIRMatch struct {
	Patient chain.Address
	// Latest is the record's current version on the ledger (amendments followed).
	Latest chain.Hash
}

// FindFHIR returns the records this node imported as typ/id: among patients if given, else
// among every patient it imported for. A resource imported without an id is found by the id
// the import gave it only if its key was its Type/id (docs/fhir.md).
func (r *Service) FindFHIR(ctx context.Context, typ, id string, patients []chain.Address) ([]FHIRMatch, error) {
	if patients == nil {
		var err error
		if patients, err = r.boundPatients(); err != nil {
			return nil, err
		}
	}
	var found []FHIRMatch
	for _, p := range patients {
		e, ok, err := r.idx.FHIR(p, r.names.name(p, typ+"/"+id))
		if err != nil {
			return nil, err
		}
		if ok {
			found = append(found, FHIRMatch{Patient: p, Latest: e.Latest})
		}
	}
	if len(found) == 0 {
		return nil, nil
	}
	var out []FHIRMatch
	err := r.query(ctx, func(view state.View) error {
		for _, m := range found {
			rec, err := state.Record(view, m.Latest)
			if err != nil {
				return err
			}
			for steps := 0; rec != nil && !rec.SupersededBy.IsZero() && steps < maxVersions; steps++ {
				if rec, err = state.Record(view, rec.SupersededBy); err != nil {
					return err
				}
			}
			if rec == nil || rec.Patient != m.Patient {
				continue // anchored by an import that did not commit
			}
			out = append(out, FHIRMatch{Patient: m.Patient, Latest: rec.ID})
		}
		return nil
	})
	return out, err
}

// Versions returns every version of the record id belongs to, oldest first, as the ledger
// knows them (erased ones marked).
func (r *Service) Versions(ctx context.Context, id chain.Hash) ([]RecordJSON, error) {
	var out []RecordJSON
	err := r.query(ctx, func(view state.View) error {
		rec, err := state.Record(view, id)
		if err != nil {
			return err
		}
		if rec == nil {
			return fmt.Errorf("%w: %s", ErrRecordNotFound, id)
		}
		for steps := 0; !rec.SupersededBy.IsZero(); steps++ {
			if steps == maxVersions {
				return fmt.Errorf("%w: record %s has more than %d versions", ErrBadRequest, id.Short(), maxVersions)
			}
			next, err := state.Record(view, rec.SupersededBy)
			if err != nil {
				return err
			}
			if next == nil {
				break
			}
			rec = next
		}
		for {
			out = append(out, recordJSON(rec))
			if rec.Supersedes.IsZero() {
				break
			}
			if len(out) == maxVersions {
				return fmt.Errorf("%w: record %s has more than %d versions", ErrBadRequest, id.Short(), maxVersions)
			}
			prev, err := state.Record(view, rec.Supersedes)
			if err != nil {
				return err
			}
			if prev == nil {
				break
			}
			rec = prev
		}
		return nil
	})
	slices.Reverse(out)
	return out, err
}
