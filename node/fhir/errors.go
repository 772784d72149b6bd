package fhir

import (
	"fmt"
	"sort"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// Error reports why input was refused. It names the resource and lists the
// problems found in it, each with the JSON pointer of the field.
type Error struct {
	// Index is the position of the resource among the Bundle's entries, or
	// -1 for a single resource and for the Bundle itself.
	Index int
	// ResourceType and ID of the resource, as far as they are known.
	ResourceType string
	ID           string
	// Problems are the most specific causes, at most maxProblems of them.
	Problems []Problem
}

// Problem is one thing wrong with a resource.
type Problem struct {
	// Path is a JSON pointer inside the resource ("/birthDate",
	// "/code/coding/0/system"), "" when the problem is the whole resource.
	Path    string
	Message string
}

// maxProblems bounds the problems kept per error, so a hostile document
// cannot produce a huge error message.
const maxProblems = 20

// Error renders the error on one line.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("fhir: ")
	b.WriteString(e.Resource())
	for i, p := range e.Problems {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		if p.Path != "" {
			b.WriteString(p.Path)
			b.WriteString(": ")
		}
		b.WriteString(p.Message)
	}
	return b.String()
}

// Resource names the resource: "entry 3 (Observation/bp-1)", "Patient/p1",
// "Observation (no id)", "resource p1" when the type is missing, and
// "input" when nothing is known.
func (e *Error) Resource() string {
	var name string
	switch {
	case e.ResourceType == "" && e.ID == "":
		name = "resource"
		if e.Index < 0 {
			return "input"
		}
	case e.ResourceType == "":
		name = "resource " + e.ID
	case e.ID == "":
		name = e.ResourceType + " (no id)"
	default:
		name = e.ResourceType + "/" + e.ID
	}
	if e.Index >= 0 {
		return fmt.Sprintf("entry %d (%s)", e.Index, name)
	}
	return name
}

func newError(index int, typ, id, path, format string, args ...any) *Error {
	return &Error{Index: index, ResourceType: typ, ID: id,
		Problems: []Problem{{Path: path, Message: fmt.Sprintf(format, args...)}}}
}

var printer = message.NewPrinter(language.English)

// problems flattens a jsonschema error tree to its leaves, the most specific
// causes, and words them for people. base is prepended to every path.
func problems(err error, base string) []Problem {
	ve, ok := err.(*jsonschema.ValidationError)
	if !ok {
		return []Problem{{Path: base, Message: err.Error()}}
	}
	var out []Problem
	seen := map[Problem]bool{}
	var walk func(*jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) > 0 {
			for _, c := range e.Causes {
				walk(c)
			}
			return
		}
		for _, p := range leafProblems(e, base) {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	walk(ve)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	if len(out) > maxProblems {
		out = append(out[:maxProblems], Problem{Message: fmt.Sprintf("and %d more problems", len(out)-maxProblems)})
	}
	return out
}

func leafProblems(e *jsonschema.ValidationError, base string) []Problem {
	path := base + jsonPointer(e.InstanceLocation)
	switch k := e.ErrorKind.(type) {
	case *kind.Required:
		out := make([]Problem, len(k.Missing))
		for i, m := range k.Missing {
			out[i] = Problem{Path: path + "/" + m, Message: "required field is missing"}
		}
		return out
	case *kind.AdditionalProperties:
		out := make([]Problem, len(k.Properties))
		for i, p := range k.Properties {
			out[i] = Problem{Path: path + "/" + p, Message: "unknown field"}
		}
		return out
	case *kind.Pattern:
		if dt := primitiveName(e.SchemaURL); dt != "" {
			return []Problem{{Path: path, Message: fmt.Sprintf("%q is not a valid FHIR %s%s", k.Got, dt, formatHint(dt))}}
		}
	case *kind.Type:
		want := strings.Join(k.Want, " or ")
		if dt := primitiveName(e.SchemaURL); dt != "" {
			want = fmt.Sprintf("%s (FHIR %s)", want, dt)
		}
		return []Problem{{Path: path, Message: fmt.Sprintf("wrong type: got %s, want %s", k.Got, want)}}
	case *kind.Const:
		return []Problem{{Path: path, Message: fmt.Sprintf("must be %v", k.Want)}}
	}
	return []Problem{{Path: path, Message: e.ErrorKind.LocalizedString(printer)}}
}

// primitiveName extracts the FHIR primitive type name ("date", "code", …)
// from a schema location such as "…#/definitions/date", or "" if the
// location is not a primitive definition.
func primitiveName(schemaURL string) string {
	i := strings.LastIndex(schemaURL, "#/definitions/")
	if i < 0 {
		return ""
	}
	name := schemaURL[i+len("#/definitions/"):]
	if name == "" || strings.ContainsRune(name, '/') || name[0] < 'a' || name[0] > 'z' {
		return ""
	}
	return name
}

func formatHint(dt string) string {
	switch dt {
	case "date":
		return " (want YYYY, YYYY-MM or YYYY-MM-DD)"
	case "dateTime":
		return " (want YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss+zz:zz)"
	case "instant":
		return " (want YYYY-MM-DDThh:mm:ss.sss+zz:zz)"
	case "time":
		return " (want hh:mm:ss)"
	case "id":
		return " (want 1-64 of A-Z a-z 0-9 - .)"
	case "code":
		return " (want non-empty text without leading, trailing or double white space)"
	}
	return ""
}

func jsonPointer(tokens []string) string {
	if len(tokens) == 0 {
		return ""
	}
	return pointer(tokens)
}
