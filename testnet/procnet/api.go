package procnet

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/medledger/medledger/chain"
)

// maxResponse bounds how much of one API response the harness reads.
const maxResponse = 16 << 20

// Status is the part of GET /v1/status the harness relies on; Raw keeps the whole document.
type Status struct {
	ChainID       string            `json:"chain_id"`
	NodeID        string            `json:"node_id"`
	Height        uint64            `json:"height"`
	LastBlockHash string            `json:"last_block_hash"`
	Peers         []json.RawMessage `json:"peers"`
	Authority     json.RawMessage   `json:"authority"`
	Raw           json.RawMessage   `json:"-"`
}

// MempoolTxs returns the pending transaction count if the status reports one (as "mempool" or
// "mempool_txs", a number or an object with "txs", "size" or "count").
func (s *Status) MempoolTxs() (int, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(s.Raw, &m) != nil {
		return 0, false
	}
	for _, key := range []string{"mempool", "mempool_txs", "mempool_size"} {
		v, ok := m[key]
		if !ok {
			continue
		}
		var n int
		if json.Unmarshal(v, &n) == nil {
			return n, true
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(v, &obj) == nil {
			for _, k := range []string{"txs", "size", "count", "len"} {
				if json.Unmarshal(obj[k], &n) == nil && obj[k] != nil {
					return n, true
				}
			}
		}
	}
	return 0, false
}

// Block is the part of GET /v1/blocks/{height} the harness relies on.
type Block struct {
	Height  uint64          `json:"height"`
	Hash    string          `json:"hash"`
	TxCount int             `json:"tx_count"`
	Txs     []string        `json:"txs"` // transaction hashes (hex), when the node lists them
	Time    json.RawMessage `json:"time"`
	Commit  struct {
		Signers []json.RawMessage `json:"signers"`
	} `json:"commit"`
	Raw json.RawMessage `json:"-"`
}

// SignedBy reports whether key appears among the commit's signers (a signer may be given as the
// key's hex or as an object that contains it).
func (b *Block) SignedBy(key chain.PubKey) bool {
	k := key.String()
	for _, s := range b.Commit.Signers {
		if strings.Contains(strings.ToLower(string(s)), k) {
			return true
		}
	}
	return false
}

// BatchResult is the answer to POST /v1/txs/batch.
type BatchResult struct {
	Accepted int               `json:"accepted"`
	Hashes   []json.RawMessage `json:"hashes"`
	Errors   []json.RawMessage `json:"errors"`
}

// APIError is a non-2xx answer from a node's API.
type APIError struct {
	Code int
	Body string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("procnet: API answered %d: %s", e.Code, strings.TrimSpace(e.Body))
}

// APIAddr is node i's API address (host:port), read from the [api] listen key of its config.toml.
func (nw *Network) APIAddr(i int) (string, error) {
	nw.mu.Lock()
	addr := nw.apis[i]
	nw.mu.Unlock()
	if addr != "" {
		return addr, nil
	}
	addr, err := apiListen(filepath.Join(nw.Home(i), "config.toml"))
	if err != nil {
		return "", err
	}
	nw.mu.Lock()
	nw.apis[i] = addr
	nw.mu.Unlock()
	return addr, nil
}

// apiListen finds `listen = "..."` in the [api] table of a TOML file. It reads only that key
// (testnet init writes it as a plain string), so the harness needs no TOML library.
func apiListen(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("procnet: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	inAPI := false
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			inAPI = line == "[api]"
			continue
		}
		key, val, ok := strings.Cut(line, "=")
		if !inAPI || !ok || strings.TrimSpace(key) != "listen" {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) < 2 || val[0] != '"' {
			return "", fmt.Errorf("procnet: %s: [api] listen must be a quoted string, got %s", path, val)
		}
		end := strings.IndexByte(val[1:], '"')
		if end < 0 {
			return "", fmt.Errorf("procnet: %s: [api] listen: unterminated string %s", path, val)
		}
		s := val[1 : 1+end]
		return s, nil
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("procnet: %s: %w", path, err)
	}
	return "", fmt.Errorf("procnet: %s has no [api] listen", path)
}

// Token is node i's API token (HOME/api.token). The node may create it when it first starts.
func (nw *Network) Token(i int) (string, error) {
	nw.mu.Lock()
	tok := nw.tok[i]
	nw.mu.Unlock()
	if tok != "" {
		return tok, nil
	}
	b, err := os.ReadFile(filepath.Join(nw.Home(i), "api.token"))
	if err != nil {
		return "", fmt.Errorf("procnet: %w", err)
	}
	tok = strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("procnet: node%d: api.token is empty", i)
	}
	nw.mu.Lock()
	nw.tok[i] = tok
	nw.mu.Unlock()
	return tok, nil
}

// Do sends one request to node i's API, with the token when auth is true, and returns the
// status code and body. A non-2xx answer is not an error here.
func (nw *Network) Do(ctx context.Context, i int, method, path string, body []byte, auth bool) (int, []byte, error) {
	ctype := ""
	if body != nil {
		ctype = "application/json"
	}
	token := ""
	if auth {
		var err error
		if token, err = nw.Token(i); err != nil {
			return 0, nil, err
		}
	}
	code, _, b, err := nw.send(ctx, nw.client, i, method, path, ctype, body, token)
	return code, b, err
}

// Request sends one authenticated request to node i's API and returns the status, headers and
// body; a non-2xx answer is not an error here. It is bounded by ctx alone, so a request that
// waits for blocks (an import, wait=commit) is not cut off by a client timeout.
func (nw *Network) Request(ctx context.Context, i int, method, path, contentType string, body []byte) (int, http.Header, []byte, error) {
	tok, err := nw.Token(i)
	if err != nil {
		return 0, nil, nil, err
	}
	return nw.send(ctx, nw.bulk, i, method, path, contentType, body, tok)
}

// RequestAs is Request with another bearer token than the operator's (a staff session), or
// none if token is empty.
func (nw *Network) RequestAs(ctx context.Context, i int, token, method, path, contentType string, body []byte) (int, http.Header, []byte, error) {
	return nw.send(ctx, nw.bulk, i, method, path, contentType, body, token)
}

// send sends one request, with token as its bearer token unless empty.
func (nw *Network) send(ctx context.Context, client *http.Client, i int, method, path, contentType string, body []byte, token string) (int, http.Header, []byte, error) {
	addr, err := nw.APIAddr(i)
	if err != nil {
		return 0, nil, nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+path, rd)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("procnet: %w", err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("procnet: node%d: %s %s: %w", i, method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("procnet: node%d: reading %s %s: %w", i, method, path, err)
	}
	return resp.StatusCode, resp.Header, b, nil
}

// call does an authenticated request and decodes a 2xx JSON answer into out.
func (nw *Network) call(ctx context.Context, i int, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("procnet: %w", err)
		}
	}
	code, b, err := nw.Do(ctx, i, method, path, body, true)
	if err != nil {
		return err
	}
	if code/100 != 2 {
		return &APIError{Code: code, Body: string(b)}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("procnet: node%d: %s %s: decoding %q: %w", i, method, path, truncate(b, 200), err)
	}
	return nil
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// Status fetches GET /v1/status from node i.
func (nw *Network) Status(ctx context.Context, i int) (*Status, error) {
	var raw json.RawMessage
	if err := nw.call(ctx, i, http.MethodGet, "/v1/status", nil, &raw); err != nil {
		return nil, err
	}
	var s Status
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("procnet: node%d status: %w", i, err)
	}
	s.Raw = raw
	return &s, nil
}

// Block fetches GET /v1/blocks/{h} from node i.
func (nw *Network) Block(ctx context.Context, i int, h uint64) (*Block, error) {
	var raw json.RawMessage
	if err := nw.call(ctx, i, http.MethodGet, "/v1/blocks/"+strconv.FormatUint(h, 10), nil, &raw); err != nil {
		return nil, err
	}
	var b Block
	if err := json.Unmarshal(raw, &b); err != nil {
		return nil, fmt.Errorf("procnet: node%d block %d: %w", i, h, err)
	}
	b.Raw = raw
	return &b, nil
}

// SubmitOne posts one transaction (POST /v1/txs) to node i and returns the hash it answers.
func (nw *Network) SubmitOne(ctx context.Context, i int, tx *chain.Tx) (string, error) {
	var out struct {
		Hash string `json:"hash"`
	}
	err := nw.call(ctx, i, http.MethodPost, "/v1/txs", map[string]string{"tx": hex.EncodeToString(tx.Encode())}, &out)
	return out.Hash, err
}

// Submit posts transactions to node i in one batch (POST /v1/txs/batch).
func (nw *Network) Submit(ctx context.Context, i int, txs []*chain.Tx) (*BatchResult, error) {
	enc := make([][]byte, len(txs))
	for k, tx := range txs {
		enc[k] = tx.Encode()
	}
	return nw.SubmitEncoded(ctx, i, enc)
}

// SubmitEncoded is Submit for transactions already encoded (canonical CBOR).
func (nw *Network) SubmitEncoded(ctx context.Context, i int, txs [][]byte) (*BatchResult, error) {
	in := struct {
		Txs []string `json:"txs"`
	}{Txs: make([]string, len(txs))}
	for k, b := range txs {
		in.Txs[k] = hex.EncodeToString(b)
	}
	var out BatchResult
	if err := nw.call(ctx, i, http.MethodPost, "/v1/txs/batch", in, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Permanent marks a condition error that no amount of waiting will cure: WaitFor returns it at
// once instead of polling on.
func Permanent(err error) error { return &permanent{err} }

type permanent struct{ error }

func (p *permanent) Unwrap() error { return p.error }

// WaitFor polls cond every interval until it reports true, returns an error, or timeout passes.
// The error on timeout names what was awaited and the last condition error seen.
func WaitFor(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	for {
		ok, err := cond(ctx)
		if ok {
			return nil
		}
		var stop *permanent
		if errors.As(err, &stop) {
			return fmt.Errorf("procnet: %s: %w", what, stop.error)
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			if last != nil {
				return fmt.Errorf("procnet: %s: not reached within %s (last error: %w)", what, timeout, last)
			}
			return fmt.Errorf("procnet: %s: not reached within %s", what, timeout)
		case <-tick.C:
		}
	}
}

// WaitHeight waits until node i reports a height of at least h, and returns that status. It
// fails early if the node's process exits.
func (nw *Network) WaitHeight(ctx context.Context, i int, h uint64, timeout time.Duration) (*Status, error) {
	var st *Status
	var seen uint64
	err := WaitFor(ctx, timeout, 100*time.Millisecond, fmt.Sprintf("node%d height %d", i, h), func(ctx context.Context) (bool, error) {
		if exitErr, ok := nw.Exited(i); ok {
			return false, Permanent(fmt.Errorf("node%d exited (%v); log tail:\n%s", i, exitErr, nw.LogTail(i, 2000)))
		}
		s, err := nw.Status(ctx, i)
		if err != nil {
			return false, err
		}
		seen = s.Height
		st = s
		return s.Height >= h, nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w (last height %d)", err, seen)
	}
	return st, nil
}
