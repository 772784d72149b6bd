package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"
)

// apiFlags are the flags of the commands that call their node's API as its operator (billing,
// claims): the home whose API address and token they read, and --json.
type apiFlags struct {
	home   string
	asJSON bool
}

func (f *apiFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.home, "home", "", "the node's home directory (its API address and token are read from it)")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the node's answer as JSON")
}

// request sends one request and returns the answer's body; body, when not nil, is sent as JSON
// (raw bytes as they are).
func (f *apiFlags) request(cmd *cobra.Command, method, path string, body any, timeout time.Duration) ([]byte, error) {
	var data []byte
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		data, ct = b, "application/json"
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			return nil, err
		}
		ct = "application/json"
	}
	return apiDo(cmd.Context(), f.home, method, path, data, ct, timeout)
}

// call is request with the billing bounds (a POST waits for its commit), decoding the answer
// into v (nil: ignore it; a *json.RawMessage: keep it as it is).
func (f *apiFlags) call(cmd *cobra.Command, method, path string, body any, v any) error {
	timeout := 10 * time.Second
	if method == http.MethodPost {
		timeout = billingCommit
	}
	out, err := f.request(cmd, method, path, body, timeout)
	if err != nil || v == nil {
		return err
	}
	if raw, ok := v.(*json.RawMessage); ok {
		*raw = out
		return nil
	}
	if err := json.Unmarshal(out, v); err != nil {
		return fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	return nil
}

// print writes the answer: indented JSON with --json, else human prints v's summary.
func (f *apiFlags) print(cmd *cobra.Command, data []byte, v any, human func(io.Writer) error) error {
	if f.asJSON {
		var buf bytes.Buffer
		if err := json.Indent(&buf, data, "", "  "); err != nil {
			return fmt.Errorf("node answered with malformed JSON: %w", err)
		}
		buf.WriteByte('\n')
		_, err := cmd.OutOrStdout().Write(buf.Bytes())
		return err
	}
	if v != nil {
		if err := json.Unmarshal(data, v); err != nil {
			return fmt.Errorf("node answered with malformed JSON: %w", err)
		}
	}
	return human(cmd.OutOrStdout())
}
