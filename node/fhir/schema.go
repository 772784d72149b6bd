package fhir

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed schema/fhir.schema.json
var schemaJSON []byte

//go:embed schema/compartmentdefinition-patient.json
var compartmentJSON []byte

// schemaURL is the name the embedded schema is registered under. The schema's
// own "id" (http://hl7.org/fhir/json-schema/4.0) becomes the base for its
// internal references.
const schemaURL = "urn:medledger:fhir-r4.schema.json"

// Validator validates FHIR R4 resources. Build one with [NewValidator] and
// reuse it: compiling the schema takes about a second. A Validator is
// immutable after construction and safe for concurrent use.
type Validator struct {
	// schemas holds one compiled schema per resource type.
	schemas map[string]*jsonschema.Schema
	// model maps a definition name to its element names and, for each, the
	// definition the element's values have ("Reference", "CodeableConcept",
	// "Observation_Component", …). Primitive definitions have no entry.
	model map[string]map[string]string
	// compartment maps a resource type to the element paths that link it to
	// a patient (see compartment.go).
	compartment map[string][][]string
}

// NewValidator compiles the embedded FHIR R4 schema and the Patient
// compartment definition.
func NewValidator() (*Validator, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, fmt.Errorf("fhir: embedded schema: %w", err)
	}
	types, model, err := schemaModel(schemaJSON)
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft6)
	if err := c.AddResource(schemaURL, doc); err != nil {
		return nil, fmt.Errorf("fhir: embedded schema: %w", err)
	}
	v := &Validator{
		schemas: make(map[string]*jsonschema.Schema, len(types)),
		model:   model,
	}
	for _, t := range types {
		s, err := c.Compile(schemaURL + "#/definitions/" + t)
		if err != nil {
			return nil, fmt.Errorf("fhir: compile schema for %s: %w", t, err)
		}
		v.schemas[t] = s
	}
	v.compartment, err = compartmentPaths(compartmentJSON, model)
	if err != nil {
		return nil, err
	}
	return v, nil
}

var shared struct {
	once sync.Once
	v    *Validator
	err  error
}

// Shared returns the process's one Validator, compiled on first use: a Validator is immutable,
// and compiling costs about a second (tens under the race detector), which every record service
// of a process (tests start many) would otherwise pay again.
func Shared() (*Validator, error) {
	shared.once.Do(func() { shared.v, shared.err = NewValidator() })
	return shared.v, shared.err
}

// ResourceTypes returns the resource types the validator knows, sorted.
func (v *Validator) ResourceTypes() []string {
	out := make([]string, 0, len(v.schemas))
	for t := range v.schemas {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// schemaModel reads the resource type list (the root discriminator mapping)
// and the element model out of the schema document.
func schemaModel(raw []byte) ([]string, map[string]map[string]string, error) {
	var doc struct {
		Discriminator struct {
			Mapping map[string]string `json:"mapping"`
		} `json:"discriminator"`
		Definitions map[string]struct {
			Properties map[string]struct {
				Ref   string `json:"$ref"`
				Items struct {
					Ref string `json:"$ref"`
				} `json:"items"`
			} `json:"properties"`
		} `json:"definitions"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, nil, fmt.Errorf("fhir: embedded schema: %w", err)
	}
	var types []string
	for t := range doc.Discriminator.Mapping {
		if _, ok := doc.Definitions[t]; !ok {
			return nil, nil, fmt.Errorf("fhir: embedded schema: no definition for resource type %s", t)
		}
		types = append(types, t)
	}
	if len(types) == 0 {
		return nil, nil, fmt.Errorf("fhir: embedded schema: no resource types")
	}
	sort.Strings(types)
	const prefix = "#/definitions/"
	model := make(map[string]map[string]string, len(doc.Definitions))
	for name, def := range doc.Definitions {
		if len(def.Properties) == 0 {
			continue
		}
		props := make(map[string]string, len(def.Properties))
		for p, ps := range def.Properties {
			ref := ps.Ref
			if ref == "" {
				ref = ps.Items.Ref
			}
			if strings.HasPrefix(ref, prefix) {
				props[p] = strings.TrimPrefix(ref, prefix)
			}
		}
		model[name] = props
	}
	return types, model, nil
}
