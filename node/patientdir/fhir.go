package patientdir

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Person is what the directory keeps of one FHIR Patient resource.
type Person struct {
	Name      string
	BirthDate string
	MRN       string
}

// maxPatients bounds the Patient resources one document contributes.
const maxPatients = 64

// Patients returns the FHIR Patient resources of doc: a resource, a Bundle (its entries'
// resources) or NDJSON. What does not parse is skipped: the import judges the document, this
// only reads names out of what it accepted.
func Patients(doc []byte) []Person {
	var out []Person
	trimmed := bytes.TrimSpace(doc)
	var one map[string]json.RawMessage
	if json.Unmarshal(trimmed, &one) == nil {
		collect(one, &out)
		return out
	}
	for _, line := range bytes.Split(trimmed, []byte("\n")) {
		var r map[string]json.RawMessage
		if json.Unmarshal(bytes.TrimSpace(line), &r) == nil {
			collect(r, &out)
		}
		if len(out) >= maxPatients {
			break
		}
	}
	return out
}

func collect(r map[string]json.RawMessage, out *[]Person) {
	var rt string
	_ = json.Unmarshal(r["resourceType"], &rt)
	switch rt {
	case "Patient":
		if len(*out) < maxPatients {
			*out = append(*out, person(r))
		}
	case "Bundle":
		var entries []struct {
			Resource map[string]json.RawMessage `json:"resource"`
		}
		_ = json.Unmarshal(r["entry"], &entries)
		for _, e := range entries {
			if e.Resource != nil {
				collect(e.Resource, out)
			}
		}
	}
}

type humanName struct {
	Use    string   `json:"use"`
	Text   string   `json:"text"`
	Family string   `json:"family"`
	Given  []string `json:"given"`
	Prefix []string `json:"prefix"`
}

type identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
	Type   struct {
		Coding []struct {
			Code string `json:"code"`
		} `json:"coding"`
		Text string `json:"text"`
	} `json:"type"`
}

func person(r map[string]json.RawMessage) Person {
	var p Person
	var names []humanName
	_ = json.Unmarshal(r["name"], &names)
	best := -1
	for i, n := range names {
		if best < 0 || (n.Use == "official" && names[best].Use != "official") {
			best = i
		}
	}
	if best >= 0 {
		n := names[best]
		if n.Text != "" {
			p.Name = n.Text
		} else {
			p.Name = strings.TrimSpace(strings.Join(append(append([]string{}, n.Given...), n.Family), " "))
		}
	}
	_ = json.Unmarshal(r["birthDate"], &p.BirthDate)
	var ids []identifier
	_ = json.Unmarshal(r["identifier"], &ids)
	// The medical record number is the identifier typed MR (HL7 v2 table 0203); failing that,
	// the first identifier with a value.
	for _, id := range ids {
		for _, c := range id.Type.Coding {
			if c.Code == "MR" && id.Value != "" && p.MRN == "" {
				p.MRN = id.Value
			}
		}
	}
	if p.MRN == "" {
		for _, id := range ids {
			if id.Value != "" {
				p.MRN = id.Value
				break
			}
		}
	}
	p.Name = clip(p.Name, 200)
	p.BirthDate = clip(p.BirthDate, 32)
	p.MRN = clip(p.MRN, 100)
	return p
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
