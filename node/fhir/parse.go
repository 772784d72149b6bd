package fhir

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
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
	// to, sorted: Patient ids; the fullUrl of a Patient entry that has no
	// id, or of a Patient named by an absolute URL outside the document; or
	// "?identifier=system|value" for a conditional reference
	// ("Patient?identifier=system|value") that no entry matches. See the
	// comment on paramPaths for how they are found.
	PatientRefs []string
	// MentionedPatients are the patients any reference of the resource names (as PatientRefs
	// names them), wherever it is: a Device's patient, a resource outside the compartment
	// definition that still refers to a patient. Sorted, distinct.
	MentionedPatients []string
	// SubjectRefs are, for a resource whose compartment parameters also name people in other
	// roles (a Coverage's subscriber and policy holder, a Claim's payee, an Invoice's
	// recipient: often a parent or guarantor), the patients it is about: the covered person or
	// the patient of the claim (see subjectPaths). Nil for every other type, whose PatientRefs
	// are its subjects. Named as PatientRefs names them.
	SubjectRefs []string
	// Identifiers are the resource's own identifier elements, each as
	// "system|value" (or "|value" without a system), in document order.
	Identifiers []string
	// Refs are the Index of every entry of the document this resource
	// refers to (by fullUrl, Type/id, or a conditional reference on
	// identifier that matches exactly one entry), sorted and distinct.
	Refs []int
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
	index       int
	typ, id     string
	fullURL     string
	method, url string // the Bundle entry's request
	obj         map[string]any
	err         *Error          // why the entry is refused
	refs        map[int]bool    // entries this one refers to, by index
	mentions    map[string]bool // patients its references name
}

func (e *entry) sortedRefs() []int {
	if len(e.refs) == 0 {
		return nil
	}
	out := make([]int, 0, len(e.refs))
	for i := range e.refs {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
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

// checkFullURL accepts urn:uuid:<uuid>, other urn: names, absolute http(s)
// URLs that end in /Type/id when the resource has an id, and the relative
// form Type/id of the resource itself (not allowed by the specification, but
// written by real exporters and accepted by HAPI FHIR).
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
	case e.id != "" && u == e.typ+"/"+e.id:
	default:
		return e.errorf("", "fullUrl %q is neither a urn:, an absolute http(s) URL nor %s/<its id>", u, e.typ)
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
