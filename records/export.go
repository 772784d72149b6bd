package records

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node/fhir"
)

// Export returns a FHIR Bundle (collection) of the patient's records this node may read (each
// read is audited like any other), the patient's consents as Consent resources and the access
// log as AuditEvent resources. role is the asking staff member's role, as for Read.
func (r *Service) Export(ctx context.Context, patient chain.Address, purpose, role string) ([]byte, error) {
	list, err := r.List(ctx, patient)
	if err != nil {
		return nil, err
	}
	var recs []ExportedRecord
	for _, rec := range list {
		if rec.Erased || rec.SupersededBy != nil {
			continue // only a record's current version is exported: one resource per Type/id
		}
		res, err := r.Read(ctx, rec.ID, purpose, false, role)
		if errors.Is(err, ErrAccessRefused) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.ID, err)
		}
		recs = append(recs, ExportedRecord{ID: rec.ID, JSON: res.JSON})
	}
	consents, err := r.Consents(ctx, patient)
	if err != nil {
		return nil, err
	}
	accesses, err := r.Accesses(ctx, patient)
	if err != nil {
		return nil, err
	}
	return BuildExport(r.fhir, patient, recs, consents, accesses)
}

// ExportedRecord is one decrypted record for an export.
type ExportedRecord struct {
	ID   chain.Hash
	JSON []byte
}

// BuildExport makes the export Bundle (collection): the records' resources, the consents as
// Consent resources and the reads as AuditEvent resources. A node's export and a patient's
// wallet export (from what it proved and decrypted itself) use it alike.
func BuildExport(v *fhir.Validator, patient chain.Address, recs []ExportedRecord, consents []ConsentJSON, accesses []AccessJSON) ([]byte, error) {
	var resources []fhir.Resource
	at := map[string]int{} // Type/id → position in resources
	for _, rec := range recs {
		parsed, err := v.Parse(rec.JSON)
		if err != nil {
			return nil, fmt.Errorf("record %s: stored FHIR no longer parses: %w", rec.ID, err)
		}
		for _, p := range parsed {
			if p.ID == "" {
				p.FullURL = fhir.ExportBase + "Record/" + rec.ID.String()
			} else if i, dup := at[p.Name()]; dup {
				// The same Type/id in two records (imported by two practices, or before this
				// node remembered its imports): the later anchored one stands.
				resources[i] = p
				continue
			} else {
				at[p.Name()] = len(resources)
			}
			resources = append(resources, p)
		}
	}
	for _, c := range consents {
		info := fhir.ConsentInfo{ID: c.ID.String(), Patient: c.Patient.String(), Grantee: c.Grantee.String(), Status: "inactive", Scope: c.Scope,
			Types: c.Types, Purpose: c.Purpose, Emergency: c.Emergency, Reason: c.Reason}
		if c.Active {
			info.Status = "active"
		}
		for _, id := range c.Records {
			info.Records = append(info.Records, id.String())
		}
		info.Granted, _ = time.Parse(time.RFC3339Nano, c.GrantedTime)
		if c.Expires != "" {
			info.Expires, _ = time.Parse(time.RFC3339Nano, c.Expires)
		}
		data, err := fhir.ConsentResource(info)
		if err != nil {
			return nil, err
		}
		resources = append(resources, fhir.Resource{ResourceType: "Consent", ID: info.ID, JSON: data})
	}
	for _, a := range accesses {
		t, _ := time.Parse(time.RFC3339Nano, a.Time)
		data, err := fhir.AuditEventResource(fhir.AccessInfo{ID: a.RequestID.String(), Record: a.Record.String(), Patient: patient.String(),
			Accessor: a.Accessor.String(), Role: a.Role, Holder: a.Holder.String(), Purpose: a.Purpose, Emergency: a.Emergency, Served: a.Outcome == "served",
			Reason: a.Reason, Recorded: t, Height: a.Height})
		if err != nil {
			return nil, err
		}
		resources = append(resources, fhir.Resource{ResourceType: "AuditEvent", ID: a.RequestID.String(), JSON: data})
	}
	return fhir.ExportBundle(resources, "collection")
}
