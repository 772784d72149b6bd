package fhir

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// MaxEntries is the most entries (Bundle entries or NDJSON lines) one document may hold. A
// Synthea patient's whole history is a few thousand; larger imports are split.
const MaxEntries = 10000

// maxEntryErrors bounds the per-entry errors EntryErrors lists, so a hostile document cannot
// produce a huge answer.
const maxEntryErrors = 100

// Document is one document to import: a single resource, a Bundle of any type that carries
// resources, or newline-delimited resources (NDJSON, the FHIR bulk-data format).
type Document struct {
	// Type is the Bundle's type ("transaction", "batch", "collection", "document",
	// "searchset", "history", "message"), "ndjson", or "" for a single resource.
	Type    string
	Entries []Entry
}

// Entry is one entry of a document.
type Entry struct {
	// Index is the entry's position in the Bundle (or the NDJSON line among the non-blank ones),
	// -1 for a single resource.
	Index   int
	FullURL string
	// Method and URL are the entry's request (transaction and batch Bundles); "" if none.
	Method, URL string
	// Resource is the validated resource; nil when the entry is refused.
	Resource *Resource
	// Err says why the entry is refused; nil if it is not.
	Err *Error
}

// Name names the entry for people: "entry 3 (DELETE Observation/x)", "entry 4 (Patient/p1)".
func (e Entry) Name() string {
	var what string
	switch {
	case e.Resource != nil:
		what = e.Resource.Name()
	case e.Err != nil && e.Err.ResourceType != "":
		what = (&Error{ResourceType: e.Err.ResourceType, ID: e.Err.ID, Index: -1}).Resource()
	case e.Method != "":
		what = e.Method + " " + e.URL
	default:
		what = "no resource"
	}
	if e.Index < 0 {
		return what
	}
	return fmt.Sprintf("entry %d (%s)", e.Index, what)
}

// EntryErrors is ParseDocument's error when entries are refused: one *Error per refused entry,
// in entry order (at most maxEntryErrors; More counts the rest).
type EntryErrors struct {
	Errors []*Error
	More   int
}

// Error lists the first refused entries on one line.
func (e *EntryErrors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fhir: %d entries refused: ", len(e.Errors)+e.More)
	for i, x := range e.Errors {
		if i == 3 {
			fmt.Fprintf(&b, "; and %d more", len(e.Errors)-3+e.More)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(strings.TrimPrefix(x.Error(), "fhir: "))
	}
	return b.String()
}

// ParseDocument decodes and validates a document to import. Unlike Parse it judges each entry on
// its own: a refused entry (no resource, a DELETE or GET request, a schema error, a dangling
// reference) gets its Err and the others are still validated. It returns the document with an
// *EntryErrors when entries are refused, and no document with an *Error when the document as a
// whole is unusable (not JSON, too large, an unknown Bundle type, a response Bundle).
//
// References must be "#id" of a contained resource; "Type/id" with a known type (optionally
// "/_history/vid"); a conditional reference "Type?search" (kept as given; one on identifier
// that matches exactly one entry refers to it); a fullUrl of an entry; or an absolute URI
// (kept as given, resolving outside the document). A urn:uuid that matches no entry is refused,
// and so is a reference to a fullUrl that several entries share. Duplicate fullUrls are
// otherwise accepted (Medplum and HAPI FHIR do); duplicate Type/ids are not.
func (v *Validator) ParseDocument(data []byte) (*Document, error) {
	if len(data) > MaxInputSize {
		return nil, newError(-1, "", "", "", "%d bytes, more than the limit of %d", len(data), MaxInputSize)
	}
	if !utf8.Valid(data) {
		return nil, newError(-1, "", "", "", "not valid UTF-8")
	}
	if lines, ok := ndjsonLines(data); ok {
		return v.parseNDJSON(lines)
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
	if top.typ != "Bundle" {
		if err := v.validate(top); err != nil {
			return nil, err
		}
		return v.finish("", []*entry{top}, false)
	}
	return v.parseBundle(top)
}

// Parse decodes and validates a single FHIR resource, a Bundle or NDJSON, and returns the
// resources in order (the Bundle itself is not returned). It is all-or-nothing: the first
// refused entry's *Error, and no resources, if anything is wrong (see ParseDocument).
func (v *Validator) Parse(data []byte) ([]Resource, error) {
	doc, err := v.ParseDocument(data)
	if ee, ok := err.(*EntryErrors); ok {
		return nil, ee.Errors[0]
	}
	if err != nil {
		return nil, err
	}
	out := make([]Resource, len(doc.Entries))
	for i, e := range doc.Entries {
		out[i] = *e.Resource
	}
	return out, nil
}

// ndjsonLines splits newline-delimited JSON: two or more non-blank lines whose first is a
// complete JSON object on its own. A pretty-printed document's first line is not.
func ndjsonLines(data []byte) ([][]byte, bool) {
	var lines [][]byte
	for _, l := range bytes.Split(data, []byte("\n")) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			lines = append(lines, l)
		}
	}
	if len(lines) < 2 || lines[0][0] != '{' {
		return nil, false
	}
	if _, err := decodeStrict(lines[0]); err != nil {
		return nil, false
	}
	return lines, true
}

func (v *Validator) parseNDJSON(lines [][]byte) (*Document, error) {
	if len(lines) > MaxEntries {
		return nil, newError(-1, "", "", "", "%d resources, more than the limit of %d: split the file", len(lines), MaxEntries)
	}
	entries := make([]*entry, len(lines))
	for i, l := range lines {
		e := &entry{index: i}
		entries[i] = e
		doc, err := decodeStrict(l)
		if err != nil {
			e.err = newError(i, "", "", "", "invalid JSON: %v", err)
			continue
		}
		if e.obj, _ = doc.(map[string]any); e.obj == nil {
			e.err = newError(i, "", "", "", "not a JSON object")
			continue
		}
		v.check(e)
	}
	return v.finish("ndjson", entries, true)
}

// parseBundle validates a Bundle without its entries' resources, then each entry on its own.
func (v *Validator) parseBundle(b *entry) (*Document, error) {
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
	typ, _ := b.obj["type"].(string)
	switch typ {
	case "transaction-response", "batch-response":
		return nil, newError(-1, "Bundle", b.id, "/type", "a %s Bundle answers a request; it holds nothing to import", typ)
	}
	if len(raw) > MaxEntries {
		return nil, newError(-1, "Bundle", b.id, "/entry", "%d entries, more than the limit of %d: split the Bundle", len(raw), MaxEntries)
	}
	entries := make([]*entry, len(raw))
	ids := map[string]int{}
	for i, item := range raw {
		e := &entry{index: i}
		entries[i] = e
		m, ok := item.(map[string]any) // the schema lets null through
		if !ok {
			e.err = newError(i, "", "", "", "entry is not a JSON object")
			continue
		}
		e.fullURL, _ = m["fullUrl"].(string)
		if req, ok := m["request"].(map[string]any); ok {
			e.method, _ = req["method"].(string)
			e.url, _ = req["url"].(string)
		}
		if msg := methodProblem(e.method, e.url); msg != "" {
			e.err = newError(i, "", "", "/request", "%s", msg)
			continue
		}
		if e.obj, _ = m["resource"].(map[string]any); e.obj == nil {
			e.err = newError(i, "", "", "", "entry has no resource: nothing to import")
			continue
		}
		if !v.check(e) {
			continue
		}
		if e.fullURL != "" {
			if err := checkFullURL(e); err != nil {
				e.err = err
				continue
			}
		}
		if e.method == "PUT" && e.id != "" && !strings.Contains(e.url, "?") && !strings.HasSuffix("/"+e.url, "/"+e.typ+"/"+e.id) {
			e.err = e.errorf("/id", "the entry's request is PUT %s, but the resource is %s/%s", e.url, e.typ, e.id)
			continue
		}
		if e.id != "" {
			key := e.typ + "/" + e.id
			if j, dup := ids[key]; dup {
				e.err = e.errorf("/id", "%s is also entry %d", key, j)
				continue
			}
			ids[key] = i
		}
	}
	return v.finish(typ, entries, true)
}

// methodProblem explains why an entry's request method cannot be imported ("" if it can).
func methodProblem(method, url string) string {
	switch method {
	case "", "POST", "PUT":
		return ""
	case "GET", "HEAD":
		return fmt.Sprintf("%s %s reads from a server: there is nothing to import (read records with GET /v1/records/{id} or the export)", method, url)
	case "DELETE":
		return fmt.Sprintf("DELETE %s is not applied: imports add records or new versions and never delete; the patient erases records (medledger wallet erase)", url)
	case "PATCH":
		return fmt.Sprintf("PATCH %s is not applied: send the whole changed resource (PUT or POST); it becomes a new version", url)
	}
	return fmt.Sprintf("request method %q is not a FHIR method", method)
}

// check identifies and validates an entry's resource, setting e.err; it reports success.
func (v *Validator) check(e *entry) bool {
	if err := v.identify(e); err != nil {
		e.err = err
		return false
	}
	if e.typ == "Bundle" {
		e.err = e.errorf("/resourceType", "a Bundle inside a Bundle is not supported")
		return false
	}
	if err := v.validate(e); err != nil {
		e.err = err
		return false
	}
	return true
}

// finish checks the references of every entry still valid and builds the document.
func (v *Validator) finish(typ string, entries []*entry, inBundle bool) (*Document, error) {
	res := newResolver(entries, inBundle)
	for _, e := range entries {
		if e.err == nil {
			e.err = v.checkReferences(e, res)
		}
	}
	doc := &Document{Type: typ, Entries: make([]Entry, len(entries))}
	var errs EntryErrors
	for i, e := range entries {
		d := Entry{Index: e.index, FullURL: e.fullURL, Method: e.method, URL: e.url, Err: e.err}
		if e.err == nil {
			js, err := canonical(e.obj)
			if err != nil {
				d.Err = e.errorf("", "encode: %v", err)
			} else {
				d.Resource = &Resource{ResourceType: e.typ, ID: e.id, FullURL: e.fullURL, Index: e.index, JSON: js,
					PatientRefs: v.patientRefs(e.typ, e.self(), e.obj, res.patient), Identifiers: identifiers(e.obj), Refs: e.sortedRefs(), MentionedPatients: sortedSet(e.mentions),
					SubjectRefs: subjectRefs(e.typ, e.obj, res.patient)}
			}
		}
		if d.Err != nil {
			if len(errs.Errors) < maxEntryErrors {
				errs.Errors = append(errs.Errors, d.Err)
			} else {
				errs.More++
			}
		}
		doc.Entries[i] = d
	}
	if len(errs.Errors) > 0 {
		return doc, &errs
	}
	return doc, nil
}

// identifiers renders a resource's identifier elements as "system|value".
func identifiers(obj map[string]any) []string {
	list, _ := obj["identifier"].([]any)
	if m, ok := obj["identifier"].(map[string]any); ok { // 0..1 in a few types (Bundle, QuestionnaireResponse, …)
		list = []any{m}
	}
	var out []string
	for _, item := range list {
		m, _ := item.(map[string]any)
		value, _ := m["value"].(string)
		if value == "" {
			continue
		}
		system, _ := m["system"].(string)
		out = append(out, system+"|"+value)
	}
	return out
}

func sortedSet(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
