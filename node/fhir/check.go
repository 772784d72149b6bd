package fhir

// Check validates one FHIR resource of any type against the schema, a Bundle of any type
// included (a transaction-response, a searchset, a history…): the Bundle's own fields, then
// each entry's resource and response outcome on their own (as ParseDocument does, for readable
// errors). Unlike ParseDocument it judges no references and imports nothing: it says whether
// an answer a server wrote is valid FHIR R4.
func (v *Validator) Check(data []byte) error {
	if len(data) > MaxInputSize {
		return newError(-1, "", "", "", "%d bytes, more than the limit of %d", len(data), MaxInputSize)
	}
	doc, err := decodeStrict(data)
	if err != nil {
		return newError(-1, "", "", "", "invalid JSON: %v", err)
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return newError(-1, "", "", "", "not a JSON object")
	}
	top := &entry{index: -1, obj: obj}
	if err := v.identify(top); err != nil {
		return err
	}
	if top.typ != "Bundle" {
		if err := v.validate(top); err != nil {
			return err
		}
		return nil
	}
	raw, isArray := obj["entry"].([]any)
	shell := without(obj, "entry")
	if es, present := obj["entry"]; present && !isArray {
		shell["entry"] = es // not an array: let the schema say so
	}
	if isArray {
		stripped := make([]any, len(raw))
		for i, item := range raw {
			m, ok := item.(map[string]any)
			if !ok {
				stripped[i] = item
				continue
			}
			m = without(m, "resource")
			if err := v.checkInner(i, item.(map[string]any)["resource"], "/resource"); err != nil {
				return err
			}
			if resp, ok := m["response"].(map[string]any); ok {
				if err := v.checkInner(i, resp["outcome"], "/response/outcome"); err != nil {
					return err
				}
				m["response"] = without(resp, "outcome")
			}
			stripped[i] = m
		}
		shell["entry"] = stripped
	}
	if err := v.schemas["Bundle"].Validate(shell); err != nil {
		return &Error{Index: -1, ResourceType: "Bundle", ID: top.id, Problems: problems(err, "")}
	}
	return nil
}

// checkInner validates a resource inside entry i of a Bundle (nil: there is none).
func (v *Validator) checkInner(i int, inner any, path string) error {
	if inner == nil {
		return nil
	}
	r, ok := inner.(map[string]any)
	if !ok {
		return newError(i, "", "", path, "must be a resource (JSON object)")
	}
	e := &entry{index: i, obj: r}
	if err := v.identify(e); err != nil {
		return err
	}
	if err := v.validate(e); err != nil {
		return err
	}
	return nil
}
