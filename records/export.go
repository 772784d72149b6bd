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
// log as AuditEvent resources.
func (r *Service) Export(ctx context.Context, patient chain.Address, purpose string) ([]byte, error) {
	list, err := r.List(ctx, patient)
	if err != nil {
		return nil, err
	}
	var resources []fhir.Resource
	for _, rec := range list {
		if rec.Erased {
			continue
		}
		res, err := r.Read(ctx, rec.ID, purpose, false)
		if errors.Is(err, ErrAccessRefused) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", rec.ID, err)
		}
		parsed, err := r.fhir.Parse(res.JSON)
		if err != nil {
			return nil, fmt.Errorf("record %s: stored FHIR no longer parses: %w", rec.ID, err)
		}
		for _, p := range parsed {
			if p.ID == "" {
				p.FullURL = fhir.ExportBase + "Record/" + rec.ID.String()
			}
			resources = append(resources, p)
		}
	}
	consents, err := r.Consents(ctx, patient)
	if err != nil {
		return nil, err
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
	accesses, err := r.Accesses(ctx, patient)
	if err != nil {
		return nil, err
	}
	for _, a := range accesses {
		t, _ := time.Parse(time.RFC3339Nano, a.Time)
		data, err := fhir.AuditEventResource(fhir.AccessInfo{ID: a.RequestID.String(), Record: a.Record.String(), Patient: patient.String(),
			Accessor: a.Accessor.String(), Holder: a.Holder.String(), Purpose: a.Purpose, Emergency: a.Emergency, Served: a.Outcome == "served",
			Reason: a.Reason, Recorded: t, Height: a.Height})
		if err != nil {
			return nil, err
		}
		resources = append(resources, fhir.Resource{ResourceType: "AuditEvent", ID: a.RequestID.String(), JSON: data})
	}
	return fhir.ExportBundle(resources, "collection")
}
