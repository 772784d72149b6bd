package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/node"
)

// maxAPIAnswerBytes bounds what the CLI reads from a node's API.
const maxAPIAnswerBytes = 64 << 20

func statusCmd() *cobra.Command {
	var home string
	cmd := &cobra.Command{
		Use:   "status --home HOME",
		Short: "Print a running node's status as JSON (height, last block hash, authorities, peers, ...)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return printAPI(cmd, home, "/v1/status")
		},
	}
	cmd.Flags().StringVar(&home, "home", "", "the node's home directory (its API address and token are read from it)")
	return cmd
}

// printAPI GETs path from the node whose home is home and prints the JSON answer indented.
func printAPI(cmd *cobra.Command, home, path string) error {
	if home == "" {
		return usagef("--home is required")
	}
	data, err := apiGet(cmd.Context(), home, path)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, data, "", "  "); err != nil {
		return fmt.Errorf("node answered with malformed JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = cmd.OutOrStdout().Write(out.Bytes())
	return err
}

// apiGet reads HOME's API address and token and GETs path; a non-200 answer is an error
// carrying the node's message.
func apiGet(ctx context.Context, home, path string) ([]byte, error) {
	return apiDo(ctx, home, http.MethodGet, path, nil, "", 10*time.Second)
}

// apiDo sends one request to the API of the node whose home is home. A 2xx answer's body is
// returned; any other is an error carrying the node's one-line message.
func apiDo(ctx context.Context, home, method, path string, body []byte, contentType string, timeout time.Duration) ([]byte, error) {
	return apiDoAs(ctx, home, "", method, path, body, contentType, timeout)
}

// apiDoAs is apiDo with a staff session token (medledger login) instead of HOME's operator
// token; an empty token means the operator's.
func apiDoAs(ctx context.Context, home, token, method, path string, body []byte, contentType string, timeout time.Duration) ([]byte, error) {
	if home == "" {
		return nil, usagef("--home is required")
	}
	cfg, err := node.LoadConfig(home)
	if err != nil {
		return nil, err
	}
	if token == "" {
		if token, err = node.ReadToken(node.Home(home).TokenFile()); err != nil {
			return nil, fmt.Errorf("%w (has the node been started once? a staff member can use --session-file instead)", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := "http://" + cfg.API.Listen + path
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("node API at %s: %w (is the node running?)", cfg.API.Listen, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAPIAnswerBytes))
	if err != nil {
		return nil, fmt.Errorf("node API at %s: %w", cfg.API.Listen, err)
	}
	if resp.StatusCode/100 != 2 {
		var e node.ErrorJSON
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return nil, fmt.Errorf("node API: HTTP %d", resp.StatusCode)
	}
	return data, nil
}
