package fhir

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
)

// absoluteRef finds absolute RESTful references in canonical JSON.
var absoluteRef = regexp.MustCompile(`"reference":"(https?://[^"\\]+)"`)

// absoluteRefs maps "Type/id" to the first absolute URL by which a resource refers to it.
func absoluteRefs(resources []Resource) map[string]string {
	out := map[string]string{}
	for _, r := range resources {
		for _, m := range absoluteRef.FindAllSubmatch(r.JSON, -1) {
			u := string(m[1])
			t := absoluteTail.FindStringSubmatch(u)
			if t == nil || t[3] != "" {
				continue // not Type/id, or a version: not the entry's own URL
			}
			if _, ok := out[t[1]+"/"+t[2]]; !ok {
				out[t[1]+"/"+t[2]] = u
			}
		}
	}
	return out
}

// ExportBase is the base of the fullUrl ExportBundle gives a resource that
// has no fullUrl of its own. The .invalid top-level domain (RFC 2606) never
// resolves, which says plainly that the URL names the resource but does not
// locate it; relative "Type/id" references still resolve against it.
const ExportBase = "https://medledger.invalid/fhir/"

// ExportBundle writes resources as a FHIR Bundle of type "collection" or
// "searchset". Each entry's fullUrl is the resource's FullURL when it has
// one (so urn:uuid references between the resources keep resolving), else
// ExportBase + "Type/id"; a resource with neither is refused. A searchset's
// entries get search.mode "match" and its total is the number of entries.
// The resources' JSON is embedded unchanged. The output parses back with
// Validator.Parse.
//
// A resource without a fullUrl of its own that another resource refers to by an absolute URL
// (an import keeps such references as given) gets that URL as its fullUrl, so the reference
// resolves within the Bundle.
func ExportBundle(resources []Resource, typ string) ([]byte, error) {
	if typ != "collection" && typ != "searchset" {
		return nil, fmt.Errorf("fhir: export: bundle type %q, want collection or searchset", typ)
	}
	var b bytes.Buffer
	b.WriteString(`{"resourceType":"Bundle","type":"`)
	b.WriteString(typ)
	b.WriteString(`"`)
	if typ == "searchset" {
		fmt.Fprintf(&b, `,"total":%d`, len(resources))
	}
	abs := absoluteRefs(resources)
	seen := make(map[string]int, len(resources))
	for i, r := range resources {
		if i == 0 {
			b.WriteString(`,"entry":[`)
		} else {
			b.WriteByte(',')
		}
		fullURL := r.FullURL
		if fullURL == "" {
			if r.ID == "" {
				return nil, fmt.Errorf("fhir: export: resource %d (%s) has neither id nor fullUrl", i, r.ResourceType)
			}
			fullURL = ExportBase + r.ResourceType + "/" + r.ID
			if u, ok := abs[r.ResourceType+"/"+r.ID]; ok {
				fullURL = u
			}
		}
		if j, dup := seen[fullURL]; dup {
			return nil, fmt.Errorf("fhir: export: resources %d and %d are both %s", j, i, fullURL)
		}
		seen[fullURL] = i
		if !json.Valid(r.JSON) {
			return nil, fmt.Errorf("fhir: export: resource %d (%s) holds invalid JSON", i, r.Name())
		}
		u, err := json.Marshal(fullURL)
		if err != nil {
			return nil, fmt.Errorf("fhir: export: %w", err)
		}
		b.WriteString(`{"fullUrl":`)
		b.Write(u)
		b.WriteString(`,"resource":`)
		b.Write(r.JSON)
		if typ == "searchset" {
			b.WriteString(`,"search":{"mode":"match"}`)
		}
		b.WriteByte('}')
		if i == len(resources)-1 {
			b.WriteByte(']')
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}
