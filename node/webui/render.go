package webui

import (
	"fmt"
	"html/template"
	"slices"
	"strconv"
	"strings"

	"github.com/medledger/medledger/records"
)

// funcs are the templates' helpers; every value they return is escaped by html/template.
var funcs = template.FuncMap{
	"short": func(s fmt.Stringer) string {
		x := s.String()
		if len(x) > 12 {
			return x[:12] + "…"
		}
		return x
	},
	"shortStr": func(x string) string {
		if len(x) > 12 {
			return x[:12] + "…"
		}
		return x
	},
	"isCurrent": func(r records.RecordJSON) bool { return r.SupersededBy == nil && !r.Erased },
	"get":       func(m map[string]any, k string) any { return m[k] },
	"day":       day,
	"cents":     cents,
	"idleText": func(sec int) string {
		if sec%60 == 0 {
			return fmt.Sprintf("%d minutes", sec/60)
		}
		return fmt.Sprintf("%d seconds", sec)
	},
}

// Field is one labelled value of a record.
type Field struct {
	Label, Value string
}

// ResourceView is a FHIR resource as a clinician reads it: a title, the fields that matter for
// its type, and every other field as a key/value list.
type ResourceView struct {
	Type   string
	Title  string
	Fields []Field
	Rest   []Field
}

// known are the fields rendered for a type, in order; what a type does not list goes to Rest.
var known = map[string][]struct{ key, label string }{
	"Condition": {{"code", "Problem"}, {"clinicalStatus", "Clinical status"}, {"verificationStatus", "Verification"},
		{"severity", "Severity"}, {"onsetDateTime", "Onset"}, {"abatementDateTime", "Resolved"}, {"recordedDate", "Recorded"}},
	"AllergyIntolerance": {{"code", "Allergy"}, {"clinicalStatus", "Clinical status"}, {"criticality", "Criticality"},
		{"reaction", "Reaction"}, {"recordedDate", "Recorded"}},
	"MedicationRequest": {{"medicationCodeableConcept", "Medication"}, {"medicationReference", "Medication"}, {"status", "Status"},
		{"intent", "Intent"}, {"dosageInstruction", "Dosage"}, {"authoredOn", "Prescribed"}, {"requester", "Prescriber"}},
	"MedicationStatement": {{"medicationCodeableConcept", "Medication"}, {"medicationReference", "Medication"}, {"status", "Status"},
		{"dosage", "Dosage"}, {"effectiveDateTime", "Taken"}, {"effectivePeriod", "Taken"}},
	"Observation": {{"code", "Observation"}, {"valueQuantity", "Value"}, {"valueString", "Value"}, {"valueCodeableConcept", "Value"},
		{"valueBoolean", "Value"}, {"valueInteger", "Value"}, {"component", "Components"}, {"interpretation", "Interpretation"},
		{"referenceRange", "Reference range"}, {"status", "Status"}, {"effectiveDateTime", "Taken"}, {"issued", "Issued"}},
	"Encounter": {{"type", "Type"}, {"class", "Class"}, {"status", "Status"}, {"period", "When"}, {"reasonCode", "Reason"},
		{"serviceProvider", "Where"}, {"participant", "Seen by"}},
	"DocumentReference": {{"type", "Document"}, {"description", "Description"}, {"date", "Date"}, {"status", "Status"},
		{"author", "Author"}, {"content", "Content"}},
	"Immunization": {{"vaccineCode", "Vaccine"}, {"status", "Status"}, {"occurrenceDateTime", "Given"}},
	"Procedure":    {{"code", "Procedure"}, {"status", "Status"}, {"performedDateTime", "Performed"}, {"performedPeriod", "Performed"}},
	// The billing pages' claims and their outcomes.
	"ExplanationOfBenefit": {{"outcome", "Outcome"}, {"status", "Status"}, {"type", "Type"}, {"use", "Use"}, {"created", "Created"},
		{"billablePeriod", "Billable period"}, {"insurer", "Payer"}, {"provider", "Provider"}, {"item", "Items"},
		{"total", "Totals"}, {"payment", "Payment"}, {"disposition", "Disposition"}},
	"Claim": {{"type", "Type"}, {"use", "Use"}, {"status", "Status"}, {"created", "Created"}, {"billablePeriod", "Billable period"},
		{"provider", "Provider"}, {"insurer", "Payer"}, {"item", "Items"}, {"total", "Total"}},
	"DiagnosticReport": {{"code", "Report"}, {"status", "Status"}, {"effectiveDateTime", "Taken"}, {"issued", "Issued"},
		{"conclusion", "Conclusion"}, {"result", "Results"}},
}

// skipped are fields no reader needs to see.
var skipped = map[string]bool{"resourceType": true, "meta": true, "text": true, "subject": true, "patient": true}

// RenderResource renders a FHIR resource decoded from JSON for reading.
func RenderResource(r map[string]any) ResourceView {
	rt, _ := r["resourceType"].(string)
	v := ResourceView{Type: rt, Title: rt}
	used := map[string]bool{}
	for _, k := range known[rt] {
		x, ok := r[k.key]
		if !ok {
			continue
		}
		used[k.key] = true
		if s := text(x); s != "" {
			v.Fields = append(v.Fields, Field{k.label, s})
		}
	}
	if len(v.Fields) > 0 {
		v.Title = rt + ": " + v.Fields[0].Value
	}
	keys := make([]string, 0, len(r))
	for k := range r {
		if !used[k] && !skipped[k] {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if s := text(r[k]); s != "" {
			v.Rest = append(v.Rest, Field{k, s})
		}
	}
	return v
}

// maxText bounds one rendered value.
const maxText = 4000

// text renders a FHIR value readably: a CodeableConcept by its text or displays, a Quantity as
// value and unit, a Period as start – end, a Reference by its display or reference, arrays
// joined, other objects as key: value.
func text(x any) string {
	s := textOf(x, 0)
	if len(s) > maxText {
		s = s[:maxText] + "…"
	}
	return s
}

func textOf(x any, depth int) string {
	if depth > 6 {
		return "…"
	}
	switch t := x.(type) {
	case nil:
		return ""
	case string:
		return t
	case bool:
		if t {
			return "yes"
		}
		return "no"
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	case []any:
		parts := make([]string, 0, len(t))
		for _, e := range t {
			if s := textOf(e, depth+1); s != "" {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, "; ")
	case map[string]any:
		return objectText(t, depth)
	}
	return fmt.Sprint(x)
}

func objectText(m map[string]any, depth int) string {
	str := func(k string) string { s, _ := m[k].(string); return s }
	// Quantity.
	if v, ok := m["value"].(float64); ok {
		unit := str("unit")
		if unit == "" {
			unit = str("code")
		}
		return strings.TrimSpace(strconv.FormatFloat(v, 'f', -1, 64) + " " + unit)
	}
	// CodeableConcept, Coding.
	if t := str("text"); t != "" {
		return t
	}
	if t := str("display"); t != "" {
		return t
	}
	if c, ok := m["coding"].([]any); ok {
		var ds []string
		for _, e := range c {
			if cm, ok := e.(map[string]any); ok {
				if d, _ := cm["display"].(string); d != "" {
					ds = append(ds, d)
				} else if code, _ := cm["code"].(string); code != "" {
					ds = append(ds, code)
				}
			}
		}
		return strings.Join(ds, ", ")
	}
	// Period.
	if st, en := str("start"), str("end"); st != "" || en != "" {
		return strings.TrimSpace(st + " – " + en)
	}
	// Reference.
	if ref := str("reference"); ref != "" {
		return ref
	}
	// Attachment: never its data inline, only what it is.
	if ct := str("contentType"); ct != "" || str("title") != "" {
		return strings.TrimSpace(str("title") + " (" + ct + ")")
	}
	if a, ok := m["attachment"].(map[string]any); ok {
		return objectText(a, depth+1)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if s := textOf(m[k], depth+1); s != "" {
			parts = append(parts, k+": "+s)
		}
	}
	return strings.Join(parts, ", ")
}

// metricLine is one metric on the status page.
type metricLine struct{ Name, Help, Value string }

// shownMetrics are the metrics the status page shows, with their plain names.
var shownMetrics = []struct{ name, help string }{
	{"medledger_height", "Height of the last committed block"},
	{"medledger_sync_target_height", "Height the node is syncing to"},
	{"medledger_peers", "Connected peers, by kind"},
	{"medledger_consensus_round", "Consensus round of the block being decided"},
	{"medledger_mempool_txs", "Transactions waiting"},
	{"medledger_replication_backlog_records", "Records waiting to be replicated"},
}

// pickMetrics reads the wanted samples from the Prometheus text exposition.
func pickMetrics(exposition string) []metricLine {
	var out []metricLine
	for _, line := range strings.Split(exposition, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		base := name
		if i := strings.IndexByte(name, '{'); i >= 0 {
			base = name[:i]
		}
		for _, m := range shownMetrics {
			if base == m.name {
				out = append(out, metricLine{Name: name, Help: m.help, Value: value})
			}
		}
	}
	return out
}

// syncLine says in words how far the node is behind what its peers have shown it.
func syncLine(ms []metricLine) string {
	var height, target float64
	var haveH, haveT bool
	for _, m := range ms {
		v, err := strconv.ParseFloat(m.Value, 64)
		if err != nil {
			continue
		}
		switch m.Name {
		case "medledger_height":
			height, haveH = v, true
		case "medledger_sync_target_height":
			target, haveT = v, true
		}
	}
	switch {
	case !haveH || !haveT:
		return "unknown (the node did not report it)"
	case height >= target:
		return fmt.Sprintf("caught up (block %.0f)", height)
	}
	return fmt.Sprintf("syncing: block %.0f of %.0f (%.0f%%)", height, target, 100*height/target)
}
