package fhir

import (
	"fmt"
	"strings"
)

// Standalone rewrites the resources of one parsed document so that each is valid on its own,
// as a FHIR server does when it stores the entries of a Bundle separately: a resource without an
// id gets newID(i) (i is its position in resources), and every reference to another entry of the
// document by that entry's urn: fullUrl (a urn:uuid, which means nothing outside the document)
// becomes the relative "Type/id" form. Every other reference (relative, contained "#id",
// absolute URLs, conditional "Type?identifier=…") is kept exactly as given. The JSON of
// each result is canonical again; PatientRefs are kept.
func Standalone(resources []Resource, newID func(i int) string) ([]Resource, error) {
	out := make([]Resource, len(resources))
	byURL := make(map[string]string, len(resources))
	for i, r := range resources {
		out[i] = r
		if out[i].ID == "" {
			id := newID(i)
			if !idPattern(id) {
				return nil, fmt.Errorf("fhir: standalone: generated id %q is not a FHIR id", id)
			}
			out[i].ID = id
		}
		if strings.HasPrefix(r.FullURL, "urn:") {
			if _, dup := byURL[r.FullURL]; dup {
				byURL[r.FullURL] = "" // shared by several entries: nothing may refer to it (Parse)
			} else {
				byURL[r.FullURL] = r.ResourceType + "/" + out[i].ID
			}
		}
	}
	for i, r := range out {
		v, err := decodeStrict(r.JSON)
		if err != nil {
			return nil, fmt.Errorf("fhir: standalone: %s: %w", r.Name(), err)
		}
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("fhir: standalone: %s is not a JSON object", r.Name())
		}
		changed := rewriteRefs(obj, byURL)
		if resources[i].ID == "" {
			obj["id"] = out[i].ID
			changed = true
		}
		if !changed {
			continue
		}
		if out[i].JSON, err = canonical(obj); err != nil {
			return nil, fmt.Errorf("fhir: standalone: %s: %w", r.Name(), err)
		}
	}
	return out, nil
}

// rewriteRefs replaces, anywhere in v, a "reference" string that is one of the document's
// fullUrls; it reports whether it changed anything.
func rewriteRefs(v any, byURL map[string]string) bool {
	changed := false
	switch x := v.(type) {
	case map[string]any:
		for k, item := range x {
			if s, ok := item.(string); ok && k == "reference" {
				if rel := byURL[s]; rel != "" {
					x[k] = rel
					changed = true
				}
				continue
			}
			if rewriteRefs(item, byURL) {
				changed = true
			}
		}
	case []any:
		for _, item := range x {
			if rewriteRefs(item, byURL) {
				changed = true
			}
		}
	}
	return changed
}

func idPattern(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}
