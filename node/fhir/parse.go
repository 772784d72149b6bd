package fhir

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Resource is one validated FHIR resource.
type Resource struct {
	ResourceType string
	// ID is the resource's logical id, "" if it has none (a transaction
	// entry to be created, for instance).
	ID string
	// FullURL is the Bundle entry's fullUrl, "" for a single resource or an
	// entry without one.
	FullURL string
	// Index is the position among the Bundle's entries, -1 for a single
	// resource.
	Index int
	// JSON is the resource in canonical form: compact, object keys sorted,
	// numbers exactly as written, no HTML escaping.
	JSON []byte
	// PatientRefs are the patients whose compartment the resource belongs
	// to, sorted: Patient ids, or the fullUrl of a Patient entry that has no
	// id. See the comment on paramPaths for how they are found.
	PatientRefs []string
}

// Name is "Type/id", or just the type when the resource has no id.
func (r Resource) Name() string {
	if r.ID == "" {
		return r.ResourceType
	}
	return r.ResourceType + "/" + r.ID
}

var (
	// relativeRef is the Type/id form of a reference, optionally versioned.
	relativeRef = regexp.MustCompile(`^([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(/_history/[A-Za-z0-9\-.]{1,64})?$`)
	uuidURN     = regexp.MustCompile(`^urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// entry is a resource being parsed.
type entry struct {
	index   int
	typ, id string
	fullURL string
	obj     map[string]any
}

// self is how PatientRefs name this resource if it is a Patient: its id,
// or, lacking one, its fullUrl.
func (e *entry) self() string {
	if e.id != "" {
		return e.id
	}
	return e.fullURL
}

func (e *entry) errorf(path, format string, args ...any) *Error {
	return newError(e.index, e.typ, e.id, path, format, args...)
}

// Parse decodes and validates a single FHIR resource or a Bundle, both JSON.
// For a Bundle it returns the entries' resources in order (the Bundle itself
// is not returned); for a single resource, that resource.
//
// It is all-or-nothing: if anything is wrong it returns an *Error naming the
// resource and field (or, for input that is not JSON at all, the input) and
// no resources. Checked are: size (MaxInputSize), UTF-8, JSON syntax with no
// duplicate keys and nothing after the value, a known resourceType, the
// schema definition of each resource's type (contained resources included),
// references, and duplicate ids and fullUrls in a Bundle.
//
// References must be "#id" of a contained resource, "Type/id" with a known
// type (optionally "/_history/vid"), or, inside a Bundle, a urn:uuid: or
// absolute URL equal to one entry's fullUrl; urn:uuid: references that match
// no entry are refused. Nested Bundles and entries without a resource are
// refused: there is nothing to import from them.
func (v *Validator) Parse(data []byte) ([]Resource, error) {
	if len(data) > MaxInputSize {
		return nil, newError(-1, "", "", "", "%d bytes, more than the limit of %d", len(data), MaxInputSize)
	}
	if !utf8.Valid(data) {
		return nil, newError(-1, "", "", "", "not valid UTF-8")
	}
	doc, err := decodeStrict(data)
	if err != nil {
		return nil, newError(-1, "", "", "", "invalid JSON: %v", err)
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, newError(-1, "", "", "", "not a JSON object")
	}
	top := &entry{index: -1, obj: obj}
	if err := v.identify(top); err != nil {
		return nil, err
	}
	var entries []*entry
	var perr *Error // not err: a nil *Error in an error is not nil
	if top.typ == "Bundle" {
		entries, perr = v.bundleEntries(top)
	} else {
		perr = v.validate(top)
		entries = []*entry{top}
	}
	if perr != nil {
		return nil, perr
	}
	res := newResolver(entries, top.typ == "Bundle")
	for _, e := range entries {
		if err := v.checkReferences(e, res); err != nil {
			return nil, err
		}
	}
	out := make([]Resource, len(entries))
	for i, e := range entries {
		js, err := canonical(e.obj)
		if err != nil {
			return nil, e.errorf("", "encode: %v", err)
		}
		out[i] = Resource{
			ResourceType: e.typ,
			ID:           e.id,
			FullURL:      e.fullURL,
			Index:        e.index,
			JSON:         js,
			PatientRefs:  v.patientRefs(e.typ, e.self(), e.obj, res.patient),
		}
	}
	return out, nil
}

// identify reads resourceType and id, refusing unknown types.
func (v *Validator) identify(e *entry) *Error {
	if id, ok := e.obj["id"].(string); ok {
		e.id = id
	}
	rt, present := e.obj["resourceType"]
	typ, ok := rt.(string)
	switch {
	case !present:
		return e.errorf("/resourceType", "required field is missing")
	case !ok:
		return e.errorf("/resourceType", "must be a string")
	}
	e.typ = typ // named in the error even if unknown
	if _, known := v.schemas[typ]; !known {
		return e.errorf("/resourceType", "unknown resource type %q", typ)
	}
	return nil
}

// validate checks a resource against the schema definition of its type.
// Contained resources are validated one by one against their own types, so
// that their errors are as readable as the container's.
func (v *Validator) validate(e *entry) *Error {
	shell := e.obj
	if c, ok := e.obj["contained"].([]any); ok {
		shell = without(e.obj, "contained")
		shell["contained"] = []any{}
		for i, item := range c {
			path := fmt.Sprintf("/contained/%d", i)
			m, ok := item.(map[string]any)
			if !ok {
				return e.errorf(path, "must be a resource (JSON object)")
			}
			ce := &entry{index: e.index, obj: m}
			if err := v.identify(ce); err != nil {
				return e.errorf(path+"/resourceType", "%s", err.Problems[0].Message)
			}
			if err := v.schemas[ce.typ].Validate(m); err != nil {
				return &Error{Index: e.index, ResourceType: e.typ, ID: e.id, Problems: problems(err, path)}
			}
		}
	}
	if err := v.schemas[e.typ].Validate(shell); err != nil {
		return &Error{Index: e.index, ResourceType: e.typ, ID: e.id, Problems: problems(err, "")}
	}
	return nil
}

// bundleEntries validates a Bundle without its entries' resources, then
// each resource on its own.
func (v *Validator) bundleEntries(b *entry) ([]*entry, *Error) {
	raw, _ := b.obj["entry"].([]any)
	shell := without(b.obj, "entry")
	if es, ok := b.obj["entry"]; ok && raw == nil {
		shell["entry"] = es // not an array: let the schema say so
	} else if raw != nil {
		stripped := make([]any, len(raw))
		for i, item := range raw {
			if m, ok := item.(map[string]any); ok {
				stripped[i] = without(m, "resource")
			} else {
				stripped[i] = item
			}
		}
		shell["entry"] = stripped
	}
	if err := v.schemas["Bundle"].Validate(shell); err != nil {
		return nil, &Error{Index: -1, ResourceType: "Bundle", ID: b.id, Problems: problems(err, "")}
	}
	entries := make([]*entry, 0, len(raw))
	fullURLs := map[string]int{}
	ids := map[string]int{}
	for i, item := range raw {
		m, ok := item.(map[string]any) // the schema lets null through
		if !ok {
			return nil, newError(i, "", "", "", "entry is not a JSON object")
		}
		r, ok := m["resource"].(map[string]any)
		if !ok {
			return nil, newError(i, "", "", "", "entry has no resource")
		}
		e := &entry{index: i, obj: r}
		if err := v.identify(e); err != nil {
			return nil, err
		}
		if e.typ == "Bundle" {
			return nil, e.errorf("/resourceType", "a Bundle inside a Bundle is not supported")
		}
		if err := v.validate(e); err != nil {
			return nil, err
		}
		if u, ok := m["fullUrl"].(string); ok {
			e.fullURL = u
			if err := checkFullURL(e); err != nil {
				return nil, err
			}
			if j, dup := fullURLs[u]; dup {
				return nil, e.errorf("", "fullUrl %q is also the fullUrl of entry %d", u, j)
			}
			fullURLs[u] = i
		}
		if e.id != "" {
			key := e.typ + "/" + e.id
			if j, dup := ids[key]; dup {
				return nil, e.errorf("/id", "%s is also entry %d", key, j)
			}
			ids[key] = i
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// checkFullURL accepts urn:uuid:<uuid>, other urn: names, and absolute
// http(s) URLs that end in /Type/id when the resource has an id.
func checkFullURL(e *entry) *Error {
	u := e.fullURL
	switch {
	case strings.HasPrefix(u, "urn:uuid:"):
		if !uuidURN.MatchString(u) {
			return e.errorf("", "fullUrl %q is not a valid urn:uuid", u)
		}
	case strings.HasPrefix(u, "urn:"):
	case strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://"):
		if e.id != "" && !strings.HasSuffix(u, "/"+e.typ+"/"+e.id) {
			return e.errorf("", "fullUrl %q does not end in /%s/%s", u, e.typ, e.id)
		}
	default:
		return e.errorf("", "fullUrl %q is neither a urn: nor an absolute http(s) URL", u)
	}
	return nil
}

// without returns a shallow copy of m without key.
func without(m map[string]any, key string) map[string]any {
	c := make(map[string]any, len(m))
	for k, v := range m {
		if k != key {
			c[k] = v
		}
	}
	return c
}

// resolver resolves references against the entries of one document.
type resolver struct {
	inBundle bool
	byURL    map[string]*entry
}

func newResolver(entries []*entry, inBundle bool) *resolver {
	r := &resolver{inBundle: inBundle, byURL: map[string]*entry{}}
	for _, e := range entries {
		if e.fullURL != "" {
			r.byURL[e.fullURL] = e
		}
	}
	return r
}

// target returns the type a reference designates, or an error message.
func (r *resolver) target(ref string, contained map[string]string) (string, string) {
	if strings.HasPrefix(ref, "#") {
		if ref == "#" {
			return "", ""
		}
		t, ok := contained[ref[1:]]
		if !ok {
			return "", fmt.Sprintf("reference %q: no contained resource with id %q", ref, ref[1:])
		}
		return t, ""
	}
	if e, ok := r.byURL[ref]; ok {
		return e.typ, ""
	}
	if strings.HasPrefix(ref, "urn:uuid:") {
		if !r.inBundle {
			return "", fmt.Sprintf("reference %q: a urn:uuid reference can only resolve inside a Bundle", ref)
		}
		return "", fmt.Sprintf("reference %q does not match the fullUrl of any entry in the Bundle", ref)
	}
	if m := relativeRef.FindStringSubmatch(ref); m != nil {
		return m[1], ""
	}
	return "", fmt.Sprintf("reference %q is not of the form Type/id", ref)
}

// patient returns the patient a reference designates, "" if none.
func (r *resolver) patient(ref string) string {
	if e, ok := r.byURL[ref]; ok {
		if e.typ != "Patient" {
			return ""
		}
		return e.self()
	}
	if m := relativeRef.FindStringSubmatch(ref); m != nil && m[1] == "Patient" {
		return m[2]
	}
	return ""
}

// checkReferences walks a resource guided by the schema model and checks
// every Reference in it, including in extensions and contained resources.
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
	typ, msg := r.target(s, contained)
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
	return nil
}
