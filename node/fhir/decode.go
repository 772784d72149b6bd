package fhir

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxInputSize is the largest document Parse accepts (32 MiB). A larger
// import must be split into several Bundles.
const MaxInputSize = 32 << 20

// MaxDepth is the deepest nesting of JSON objects and arrays Parse accepts.
// Real FHIR resources stay well below 40 levels.
const MaxDepth = 100

// decodeStrict decodes exactly one JSON value. Numbers stay json.Number so
// decimals keep their precision (FHIR requires it). It refuses duplicate
// object keys (an ambiguous record), null anywhere but in an array, nesting
// deeper than MaxDepth, invalid UTF-8 (checked by the caller) and anything
// after the value but white space.
func decodeStrict(data []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	v, err := decodeValue(d, nil, 0, false)
	if err != nil {
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON value")
	}
	return v, nil
}

func decodeValue(d *json.Decoder, path []string, depth int, inArray bool) (any, error) {
	tok, err := d.Token()
	if err == io.EOF {
		return nil, errors.New("unexpected end of JSON")
	}
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		if depth >= MaxDepth {
			return nil, fmt.Errorf("at %s: nested deeper than %d levels", pointer(path), MaxDepth)
		}
		switch t {
		case '{':
			obj := map[string]any{}
			for d.More() {
				kt, err := d.Token()
				if err != nil {
					return nil, err
				}
				k, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("at %s: object key is not a string", pointer(path))
				}
				if _, dup := obj[k]; dup {
					return nil, fmt.Errorf("at %s: duplicate key %q", pointer(path), k)
				}
				val, err := decodeValue(d, append(path, k), depth+1, false)
				if err != nil {
					return nil, err
				}
				obj[k] = val
			}
			if _, err := d.Token(); err != nil {
				return nil, err
			}
			return obj, nil
		case '[':
			arr := []any{}
			for d.More() {
				val, err := decodeValue(d, append(path, fmt.Sprint(len(arr))), depth+1, true)
				if err != nil {
					return nil, err
				}
				arr = append(arr, val)
			}
			if _, err := d.Token(); err != nil {
				return nil, err
			}
			return arr, nil
		}
		return nil, fmt.Errorf("at %s: unexpected %v", pointer(path), t)
	case nil:
		// FHIR JSON has no nulls but as array items that keep primitive
		// values aligned with their _element extensions.
		if !inArray {
			return nil, fmt.Errorf("at %s: null is not allowed here (leave the field out)", pointer(path))
		}
		return nil, nil
	default:
		return t, nil // string, bool, json.Number
	}
}

// canonical encodes a decoded value compactly with object keys sorted and
// without HTML escaping, so the same content always gives the same bytes.
func canonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// pointer renders a JSON pointer (RFC 6901) for a path.
func pointer(path []string) string {
	if len(path) == 0 {
		return "/"
	}
	var b bytes.Buffer
	for _, p := range path {
		b.WriteByte('/')
		for i := 0; i < len(p); i++ {
			switch p[i] {
			case '~':
				b.WriteString("~0")
			case '/':
				b.WriteString("~1")
			default:
				b.WriteByte(p[i])
			}
		}
	}
	return b.String()
}
