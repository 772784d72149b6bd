package fhir

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
)

var (
	// conditionalRef is a conditional reference: Type?search (FHIR R4 3.1.0.1.2, transactions).
	conditionalRef = regexp.MustCompile(`^([A-Z][A-Za-z]+)\?(.+)$`)
	// absoluteTail is the Type/id (optionally versioned) an absolute RESTful URL ends in.
	absoluteTail = regexp.MustCompile(`/([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$`)
	// uriScheme starts an absolute URI (urn:oid:…, https://…).
	uriScheme = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.\-]*:`)
)

// resolver resolves references against the entries of one document.
type resolver struct {
	inBundle bool
	byURL    map[string][]*entry
	byName   map[string]*entry   // "Type/id"
	byIdent  map[string][]*entry // "Type|system|value"
	byValue  map[string][]*entry // "Type|value", for identifier=value without a system
}

func newResolver(entries []*entry, inBundle bool) *resolver {
	r := &resolver{inBundle: inBundle, byURL: map[string][]*entry{}, byName: map[string]*entry{}, byIdent: map[string][]*entry{}, byValue: map[string][]*entry{}}
	for _, e := range entries {
		if e.err != nil || e.obj == nil {
			continue
		}
		if e.fullURL != "" {
			r.byURL[e.fullURL] = append(r.byURL[e.fullURL], e)
		}
		if e.id != "" {
			r.byName[e.typ+"/"+e.id] = e
		}
		for _, id := range identifiers(e.obj) {
			r.byIdent[e.typ+"|"+id] = append(r.byIdent[e.typ+"|"+id], e)
			value := id[strings.LastIndex(id, "|")+1:]
			r.byValue[e.typ+"|"+value] = append(r.byValue[e.typ+"|"+value], e)
		}
	}
	return r
}

// conditionalTarget parses a conditional reference's search. Only identifier=[system|]value is
// matched against the document's entries; any other search stays unresolved. It returns the
// normalized search ("identifier=system|value") and the one entry it matches (nil if none or
// several).
func (r *resolver) conditionalTarget(typ, search string) (string, *entry) {
	q, err := url.ParseQuery(search)
	if err != nil || len(q) != 1 || len(q["identifier"]) != 1 {
		return search, nil
	}
	id := q.Get("identifier")
	norm := "identifier=" + id
	var found []*entry
	if strings.Contains(id, "|") {
		found = r.byIdent[typ+"|"+id]
	} else {
		found = r.byValue[typ+"|"+id]
	}
	if len(found) == 1 {
		return norm, found[0]
	}
	return norm, nil
}

// resolve returns the type a reference designates ("" when it cannot be told) and the entry it
// refers to (nil: outside the document), or a message saying why it is refused.
func (r *resolver) resolve(ref string, contained map[string]string) (string, *entry, string) {
	if strings.HasPrefix(ref, "#") {
		if ref == "#" {
			return "", nil, ""
		}
		t, ok := contained[ref[1:]]
		if !ok {
			return "", nil, fmt.Sprintf("reference %q: no contained resource with id %q", ref, ref[1:])
		}
		return t, nil, ""
	}
	if es := r.byURL[ref]; len(es) > 0 {
		if len(es) > 1 {
			return "", nil, fmt.Sprintf("reference %q: entries %d and %d share this fullUrl, so it is ambiguous", ref, es[0].index, es[1].index)
		}
		return es[0].typ, es[0], ""
	}
	if strings.HasPrefix(ref, "urn:uuid:") {
		if !r.inBundle {
			return "", nil, fmt.Sprintf("reference %q: a urn:uuid reference can only resolve inside a Bundle", ref)
		}
		return "", nil, fmt.Sprintf("reference %q does not match the fullUrl of any entry in the Bundle", ref)
	}
	if m := conditionalRef.FindStringSubmatch(ref); m != nil {
		_, target := r.conditionalTarget(m[1], m[2])
		return m[1], target, ""
	}
	if m := relativeRef.FindStringSubmatch(ref); m != nil {
		return m[1], r.byName[m[1]+"/"+m[2]], ""
	}
	if uriScheme.MatchString(ref) {
		if m := absoluteTail.FindStringSubmatch(ref); m != nil && (strings.HasPrefix(ref, "http://") || strings.HasPrefix(ref, "https://")) {
			return m[1], nil, ""
		}
		return "", nil, "" // another server's resource, or a URI naming something: kept as given
	}
	return "", nil, fmt.Sprintf("reference %q is not of the form Type/id", ref)
}

// patient names the patient a reference designates, "" if none: a Patient entry by its id (or
// fullUrl, lacking one); "Patient/id" by the id; "Patient?identifier=s|v" that matches no entry
// as "?identifier=s|v"; an absolute URL of a Patient outside the document as that URL.
func (r *resolver) patient(ref string) string {
	typ, target, msg := r.resolve(ref, nil)
	if msg != "" || typ != "Patient" {
		return ""
	}
	if target != nil {
		return target.self()
	}
	if m := conditionalRef.FindStringSubmatch(ref); m != nil {
		norm, _ := r.conditionalTarget(m[1], m[2])
		return "?" + norm
	}
	if m := relativeRef.FindStringSubmatch(ref); m != nil {
		return m[2]
	}
	return ref
}

// checkReferences walks a resource guided by the schema model and checks every Reference in it,
// including in extensions and contained resources; it notes the entries referred to.
func (v *Validator) checkReferences(e *entry, r *resolver) *Error {
	contained := map[string]string{}
	if c, ok := e.obj["contained"].([]any); ok {
		for _, item := range c {
			m := item.(map[string]any) // checked by validate
			id, _ := m["id"].(string)
			t, _ := m["resourceType"].(string)
			contained[id] = t
		}
	}
	var walk func(val any, def string, path []string) *Error
	walk = func(val any, def string, path []string) *Error {
		switch x := val.(type) {
		case []any:
			for i, item := range x {
				if err := walk(item, def, append(path, fmt.Sprint(i))); err != nil {
					return err
				}
			}
		case map[string]any:
			if def == "ResourceList" {
				def, _ = x["resourceType"].(string)
			}
			if def == "Reference" {
				if ref, ok := x["reference"].(string); ok {
					if err := v.checkReference(e, r, contained, x, ref, path); err != nil {
						return err
					}
				}
			}
			props := v.model[def]
			for k, item := range x {
				if d, ok := props[k]; ok {
					if err := walk(item, d, append(path, k)); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	return walk(e.obj, e.typ, nil)
}

func (v *Validator) checkReference(e *entry, r *resolver, contained map[string]string, ref map[string]any, s string, path []string) *Error {
	p := pointer(append(path, "reference"))
	typ, target, msg := r.resolve(s, contained)
	if msg != "" {
		return e.errorf(p, "%s", msg)
	}
	if typ != "" {
		if _, known := v.schemas[typ]; !known {
			return e.errorf(p, "reference %q: unknown resource type %q", s, typ)
		}
		if want, ok := ref["type"].(string); ok && want != typ {
			return e.errorf(p, "reference %q designates a %s, but its type says %s", s, typ, want)
		}
	}
	if typ == "Patient" {
		if p := r.patient(s); p != "" {
			if e.mentions == nil {
				e.mentions = map[string]bool{}
			}
			e.mentions[p] = true
		}
	}
	if target != nil && target != e {
		if e.refs == nil {
			e.refs = map[int]bool{}
		}
		e.refs[target.index] = true
	}
	return nil
}
