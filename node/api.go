package node

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/chain/store"
	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/node/auditlog"
	"github.com/medledger/medledger/node/metrics"
	"github.com/medledger/medledger/node/patientdir"
	"github.com/medledger/medledger/node/staff"
	"github.com/medledger/medledger/node/webui"
	"github.com/medledger/medledger/records"
)

// Backend is what the HTTP API needs from a running replica; *Runner implements it. Reads go
// through Query because the replica is single-threaded.
type Backend interface {
	Submit(ctx context.Context, tx *chain.Tx) (chain.Hash, error)
	// Query runs f on the replica's goroutine, between its events: for what only the replica
	// knows (mempool, round).
	Query(ctx context.Context, f func(*replica.Replica)) error
	// Chain is the committed chain for reads that need nothing else (state, blocks,
	// certificates). Its reads are safe beside commits and do not wait for the replica: a read
	// of a record or a block never queues behind a block being executed and synced.
	Chain() store.Store
}

// NodeInfo is the static part of GET /v1/status.
type NodeInfo struct {
	ChainID   string
	NodeID    string        // the libp2p peer id
	Authority *chain.PubKey // nil on a full node
	Peers     func() []string
	// Provider is this node's provider id (the address of its provider key); nil when the node
	// has no record service (tests of the bare API).
	Provider *chain.Address
}

// MaxBatchTxs bounds the transactions in one POST /v1/txs/batch.
const MaxBatchTxs = 10_000

// apiTimeout bounds the time a request waits for the replica's goroutine.
const apiTimeout = 10 * time.Second

// API serves the node's HTTP JSON API. Every request but POST /v1/login needs
// "Authorization: Bearer <token>": the operator's token (every permission) or a staff user's
// session token (its role's permissions, staff.Permissions). Every request is written to the
// local audit log when there is one (attachStaff).
type API struct {
	b             Backend
	info          NodeInfo
	token         []byte
	maxBody       int64
	maxBatchBytes int64
	log           *slog.Logger
	mux           *http.ServeMux
	records       *records.Service
	commits       *commitHub
	// coSigner is this node's authority key, which co-signs break-glass accesses (POST
	// /v1/emergency/cosign); nil on a full node.
	coSigner *chain.PrivKey
	// staff checks staff logins and sessions; nil: only the operator token is accepted.
	staff *staff.Gate
	// audit is the local audit log; nil: requests are not logged.
	audit *auditlog.Log
	// ops serves /metrics, /healthz and /readyz without a token, and metrics counts record
	// operations; nil: neither (attachOps).
	ops     http.Handler
	metrics *metrics.Metrics
	// ui serves the practice's web pages (node/webui) under /ui/ and redirects / there; nil:
	// none. It authenticates by its own session cookie and calls this API in process with the
	// session's bearer token, so ServeHTTP hands it its paths before any token check.
	ui http.Handler
	// patients is the local patient directory an import adds names to; nil: none.
	patients *patientdir.Dir
	// billingKeys holds a payer's billing keys, one per provider (claims_keys.go).
	billingKeys billingKeyStore
	// billing serves /v1/billing (attachBilling); nil: not attached.
	billing *billingAPI
}

// attachOps serves m's routes with the probes p, ahead of the token check, and counts record
// operations in m.
func (a *API) attachOps(m *metrics.Metrics, p metrics.Probes) {
	a.ops, a.metrics = m.Routes(p), m
}

// NewAPI returns the API handler over b. Bodies are limited to maxBody bytes, batch bodies to
// maxBatchBytes.
func NewAPI(b Backend, info NodeInfo, token string, maxBody, maxBatchBytes int64, log *slog.Logger) *API {
	a := &API{b: b, info: info, token: []byte(token), maxBody: maxBody, maxBatchBytes: maxBatchBytes, log: log, mux: http.NewServeMux()}
	a.handle("GET /v1/status", staff.PermStatus, a.status)
	a.handle("GET /v1/blocks/{height}", staff.PermStatus, a.block)
	a.handle("POST /v1/txs", staff.PermSubmit, a.submit)
	a.handle("POST /v1/txs/batch", staff.PermSubmit, a.submitBatch)
	a.handle("GET /v1/accounts/{address}", staff.PermAccounts, a.account)
	a.handle("POST /v1/logout", anyone, a.logout)
	a.mux.HandleFunc("/", a.noRoute)
	return a
}

// routeMethods are the methods a path is probed with when its method has no route.
var routeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}

// noRoute answers a request no pattern matched: 405 with an Allow header when the path has
// routes for other methods (the catch-all "/" pattern would otherwise hide the mux's own
// 405), else 404; both in the API's JSON error shape (an OperationOutcome under /fhir).
func (a *API) noRoute(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range routeMethods {
		if m == r.Method {
			continue
		}
		probe := r.Clone(r.Context())
		probe.Method = m
		if _, pattern := a.mux.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeErrorFor(w, r, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s: use %s (see docs/api.md)", r.Method, r.URL.Path, strings.Join(allow, " or ")))
		return
	}
	writeErrorFor(w, r, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s (see docs/api.md)", r.Method, r.URL.Path))
}

// ServeHTTP authenticates the request (staff.go), dispatches it, and writes it to the local
// audit log.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Metrics and probes need no token and are not written to the audit log (a scraper would
	// fill it): their answers hold no health information and nothing a token protects.
	if a.ops != nil && metrics.IsRoute(r.URL.Path) {
		a.ops.ServeHTTP(w, r)
		return
	}
	if a.ui != nil && webui.IsRoute(r.URL.Path) {
		a.ui.ServeHTTP(w, r)
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	info := &requestInfo{}
	r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, info))
	a.serve(sw, r, info)
	if a.metrics != nil {
		countRecordOp(a.metrics, r.Pattern, sw.status)
	}
	a.writeAudit(r, sw.status, info)
}

// serve checks the bearer token (the operator's or a session's), then dispatches.
func (a *API) serve(w http.ResponseWriter, r *http.Request, info *requestInfo) {
	if r.Method == http.MethodPost && r.URL.Path == "/v1/login" {
		a.login(w, r, info)
		return
	}
	auth := r.Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	tok = strings.TrimSpace(tok)
	switch {
	case auth == "":
		w.Header().Set("WWW-Authenticate", "Bearer")
		info.note = "no credentials"
		writeErrorFor(w, r, http.StatusUnauthorized, "missing Authorization header: send \"Authorization: Bearer <token from HOME/api.token, or a session token from POST /v1/login>\"")
		return
	case ok && subtle.ConstantTimeCompare([]byte(tok), a.token) == 1:
		info.user, info.role = operatorName, staff.RoleOperator
	case ok && a.staff != nil && strings.HasPrefix(tok, staff.TokenPrefix):
		p, err := a.staff.Authenticate(tok)
		if errors.Is(err, staff.ErrNoSession) {
			info.user, info.role = p.User, p.Role // known when the user was disabled since
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			info.note = "session ended or unknown"
			writeErrorFor(w, r, http.StatusUnauthorized, err.Error())
			return
		}
		if err != nil {
			a.internal(w, "session", err)
			return
		}
		info.user, info.role = p.User, p.Role
	default:
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		info.note = "invalid token"
		writeErrorFor(w, r, http.StatusUnauthorized, "invalid API token")
		return
	}
	a.mux.ServeHTTP(w, r)
}

// StatusJSON is the answer to GET /v1/status.
type StatusJSON struct {
	ChainID       string          `json:"chain_id"`
	NodeID        string          `json:"node_id"`
	Authority     *chain.PubKey   `json:"authority"`
	Height        uint64          `json:"height"`
	LastBlockHash *chain.Hash     `json:"last_block_hash"` // null at height 0
	LastBlockTime string          `json:"last_block_time"` // genesis time at height 0
	Round         uint32          `json:"round"`
	Authorities   []AuthorityJSON `json:"authorities"`
	Peers         []string        `json:"peers"`
	Mempool       MempoolJSON     `json:"mempool"`
	// ProviderID is the node's provider id; ProviderRegistered says whether it is on the ledger.
	ProviderID         *chain.Address `json:"provider_id"`
	ProviderRegistered bool           `json:"provider_registered"`
	// Role is the ledger role of the member at ProviderID (the node's signing key), whatever it
	// is ("provider", "payer"); null until it is registered. A payer's node is not a provider.
	Role *chain.Role `json:"role"`
}

// AuthorityJSON is one member of the authority set.
type AuthorityJSON struct {
	Key  chain.PubKey `json:"key"`
	Name string       `json:"name"`
}

// MempoolJSON is the pending-transaction pool's size.
type MempoolJSON struct {
	Txs   int `json:"txs"`
	Bytes int `json:"bytes"`
}

// BlockJSON is the answer to GET /v1/blocks/{height}.
type BlockJSON struct {
	Height              uint64       `json:"height"`
	Hash                chain.Hash   `json:"hash"`
	Time                string       `json:"time"`
	Proposer            chain.PubKey `json:"proposer"`
	PrevHash            chain.Hash   `json:"prev_hash"`
	StateRoot           chain.Hash   `json:"state_root"`
	TxRoot              chain.Hash   `json:"tx_root"`
	AuthoritiesHash     chain.Hash   `json:"authorities_hash"`
	NextAuthoritiesHash chain.Hash   `json:"next_authorities_hash"`
	TxCount             int          `json:"tx_count"`
	Txs                 []chain.Hash `json:"txs"`
	Commit              CommitJSON   `json:"commit"`
}

// CommitJSON is a block's commit certificate, summarized.
type CommitJSON struct {
	Round   uint32         `json:"round"`
	Signers []chain.PubKey `json:"signers"`
}

// TxAccepted is the answer to POST /v1/txs.
type TxAccepted struct {
	Hash chain.Hash `json:"hash"`
	// Height is the block the transaction committed in (with ?wait=commit only).
	Height uint64 `json:"height,omitempty"`
}

// BatchResult is the answer to POST /v1/txs/batch.
type BatchResult struct {
	Accepted int          `json:"accepted"`
	Hashes   []chain.Hash `json:"hashes"`
	Errors   []BatchError `json:"errors"`
}

// BatchError names a refused transaction of a batch by its index.
type BatchError struct {
	Index int    `json:"index"`
	Error string `json:"error"`
}

// FormatTime renders a block time (Unix milliseconds) as RFC 3339 in UTC.
func FormatTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func (a *API) status(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	st := StatusJSON{ChainID: a.info.ChainID, NodeID: a.info.NodeID, Authority: a.info.Authority, Peers: []string{}}
	if a.info.Peers != nil {
		if p := a.info.Peers(); p != nil {
			st.Peers = p
		}
	}
	var qerr error
	err := a.b.Query(ctx, func(rep *replica.Replica) {
		s := rep.Store()
		st.Height = s.Height()
		st.Round = rep.Engine().Round()
		for _, m := range rep.Authorities().Authorities {
			st.Authorities = append(st.Authorities, AuthorityJSON{Key: m.Key, Name: m.Name})
		}
		st.Mempool = MempoolJSON{Txs: rep.Mempool().Len(), Bytes: rep.Mempool().Bytes()}
		if a.info.Provider != nil {
			st.ProviderID = a.info.Provider
			m, err := state.Member(s.State(), *a.info.Provider)
			if err == nil && m != nil {
				st.Role = &m.Role
				st.ProviderRegistered = m.Role == chain.RoleProvider
			}
		}
		if st.Height == 0 {
			g, err := s.Genesis()
			if err != nil {
				qerr = err
				return
			}
			st.LastBlockTime = FormatTime(g.TimeMs)
			return
		}
		b, err := s.Block(st.Height)
		if err != nil {
			qerr = err
			return
		}
		h := b.Hash()
		st.LastBlockHash, st.LastBlockTime = &h, FormatTime(b.Header.Time)
	})
	if err = errors.Join(err, qerr); err != nil {
		a.internal(w, "status", err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *API) block(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("height")
	height, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || height == 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("height %q: want a block height, a positive decimal integer", raw))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	var (
		b      *chain.Block
		cert   *chain.CommitCert
		top    uint64
		qerr   error
		exists bool
	)
	err = ctx.Err()
	if s := a.b.Chain(); err == nil {
		if top = s.Height(); height <= top {
			exists = true
			if b, qerr = s.Block(height); qerr == nil {
				cert, qerr = s.Cert(height)
			}
		}
	}
	if err == nil && errors.Is(qerr, store.ErrNotFound) {
		exists = false
	} else if err = errors.Join(err, qerr); err != nil {
		a.internal(w, "block", err)
		return
	}
	if !exists {
		writeError(w, http.StatusNotFound, fmt.Sprintf("no block at height %d: the chain is at height %d", height, top))
		return
	}
	out := BlockJSON{
		Height: b.Header.Height, Hash: b.Hash(), Time: FormatTime(b.Header.Time), Proposer: b.Header.Proposer,
		PrevHash: b.Header.PrevHash, StateRoot: b.Header.StateRoot, TxRoot: b.Header.TxRoot,
		AuthoritiesHash: b.Header.AuthoritiesHash, NextAuthoritiesHash: b.Header.NextAuthoritiesHash,
		TxCount: len(b.Txs), Txs: make([]chain.Hash, len(b.Txs)),
		Commit: CommitJSON{Round: cert.Round, Signers: cert.Signers()},
	}
	for i, tx := range b.Txs {
		out.Txs[i] = tx.Hash()
	}
	writeJSON(w, http.StatusOK, out)
}

// readBody reads the whole body within limit; on failure it has answered the request.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	if r.ContentLength > limit {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is %d bytes, limit %d", r.ContentLength, limit))
		return nil, false
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body exceeds the limit of %d bytes", limit))
		} else {
			writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		}
		return nil, false
	}
	return data, true
}

// decodeJSON decodes exactly one JSON object into v, refusing unknown fields.
func decodeJSON(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON body: %w", err)
	}
	if dec.More() {
		return errors.New("malformed JSON body: data after the object")
	}
	return nil
}

func isCBOR(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/cbor"
}

// decodeTx decodes one transaction from hex and checks it names this chain.
func (a *API) decodeTx(hexTx string) (*chain.Tx, error) {
	if hexTx == "" {
		return nil, errors.New(`missing "tx": want the hex of a canonical CBOR transaction`)
	}
	if len(hexTx) > 2*chain.MaxTxBytes {
		return nil, fmt.Errorf("transaction is %d bytes, limit %d", len(hexTx)/2, chain.MaxTxBytes)
	}
	raw, err := hex.DecodeString(hexTx)
	if err != nil {
		return nil, fmt.Errorf("tx is not hex: %w", err)
	}
	return a.decodeRawTx(raw)
}

func (a *API) decodeRawTx(raw []byte) (*chain.Tx, error) {
	tx, err := chain.DecodeTx(raw)
	if err != nil {
		return nil, fmt.Errorf("transaction does not decode: %w", err)
	}
	if tx.ChainID != a.info.ChainID {
		return nil, fmt.Errorf("transaction is for chain %q, this node runs %q", tx.ChainID, a.info.ChainID)
	}
	return tx, nil
}

// submitStatus maps a submission error to an HTTP status: 503 for refusals about this node's
// load (retry later), 409 for a nonce or transaction that conflicts with the pending or
// committed ones (or a transaction dropped from the mempool for such a reason), 422 for what the
// ledger's rules refuse.
func submitStatus(err error) int {
	switch {
	case errors.Is(err, replica.ErrMempoolFull), errors.Is(err, replica.ErrSignerFull), errors.Is(err, replica.ErrRegistrationsFull),
		errors.Is(err, ErrBacklog):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrTxDropped):
		return http.StatusConflict
	case errors.Is(err, replica.ErrDuplicateTx), errors.Is(err, replica.ErrStaleNonce), errors.Is(err, replica.ErrNonceGap):
		return http.StatusConflict
	case errors.Is(err, replica.ErrNotMember), errors.Is(err, replica.ErrRefusedByState):
		return http.StatusUnprocessableEntity
	case errors.Is(err, replica.ErrInvalid), errors.Is(err, chain.ErrBadSignature):
		return http.StatusBadRequest
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func submitMessage(err error) string {
	switch {
	case errors.Is(err, replica.ErrMempoolFull):
		return "mempool full: retry later"
	case errors.Is(err, replica.ErrSignerFull):
		return "too many pending transactions from this signer: retry after the next block"
	case errors.Is(err, replica.ErrRegistrationsFull):
		return "too many pending registrations: retry later"
	case errors.Is(err, ErrBacklog):
		return err.Error()
	}
	return strings.TrimPrefix(err.Error(), replica.ErrInvalid.Error()+": ")
}

func (a *API) submit(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, a.maxBody)
	if !ok {
		return
	}
	var tx *chain.Tx
	var err error
	if isCBOR(r) {
		tx, err = a.decodeRawTx(data)
	} else {
		var req struct {
			Tx string `json:"tx"`
		}
		if err = decodeJSON(data, &req); err == nil {
			tx, err = a.decodeTx(req.Tx)
		}
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	wait := r.URL.Query().Get("wait")
	if wait != "" && (wait != "commit" || a.commits == nil) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("wait=%q: the only choice is wait=commit", wait))
		return
	}
	var committed chan records.Outcome
	if wait == "commit" {
		var forget func()
		committed, forget = a.commits.expect(tx.Hash())
		defer forget()
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	var h chain.Hash
	if cb, ok := a.b.(clientBacklogger); ok {
		err = cb.ClientBacklog()
	}
	if err == nil {
		h, err = a.b.Submit(ctx, tx)
	}
	if err != nil {
		code := submitStatus(err)
		if code == http.StatusInternalServerError {
			a.internal(w, "submit", err)
			return
		}
		if code == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1") // about a block
		}
		writeError(w, code, submitMessage(err))
		return
	}
	if committed == nil {
		writeJSON(w, http.StatusAccepted, TxAccepted{Hash: h})
		return
	}
	// The server's write timeout is no longer than the wait: without more time the 504 below
	// would never be written and the client would see the connection close (EOF).
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(commitWait + 10*time.Second))
	wctx, stop := context.WithTimeout(r.Context(), commitWait)
	defer stop()
	height, err := waitCommit(wctx, committed)
	switch {
	case errors.Is(err, ErrTxDropped):
		writeError(w, http.StatusConflict, fmt.Sprintf("transaction %s accepted but not committed: %v", h, err))
		return
	case err != nil:
		writeError(w, http.StatusGatewayTimeout, fmt.Sprintf("transaction %s accepted but not committed within %s (it may still commit)", h, commitWait))
		return
	}
	writeJSON(w, http.StatusOK, TxAccepted{Hash: h, Height: height})
}

// AccountJSON is the answer to GET /v1/accounts/{address}.
type AccountJSON struct {
	Address   chain.Address `json:"address"`
	Nonce     uint64        `json:"nonce"`      // last committed nonce
	NextNonce uint64        `json:"next_nonce"` // the nonce a new transaction should carry, counting pending ones
	Patient   bool          `json:"patient"`
	Provider  bool          `json:"provider"`
	// Role is the member's role (null for an address that is no member); Active says whether
	// it is active at the last block's time (registered, unexpired, unrevoked, not left).
	Role   *chain.Role `json:"role,omitempty"`
	Active bool        `json:"active"`
	// Key is the member's current signing key (a provider's is what an authority proposal names).
	Key *chain.PubKey `json:"key,omitempty"`
}

func (a *API) account(w http.ResponseWriter, r *http.Request) {
	addr, err := chain.ParseAddress(r.PathValue("address"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("address %q: want 40 hex digits", r.PathValue("address")))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	out := AccountJSON{Address: addr}
	var qerr error
	err = a.b.Query(ctx, func(rep *replica.Replica) {
		view := rep.Store().State()
		if out.Nonce, qerr = state.Nonce(view, addr); qerr != nil {
			return
		}
		m, err := state.Member(view, addr)
		if qerr = err; err != nil {
			return
		}
		out.NextNonce = out.Nonce + 1
		if m == nil {
			return
		}
		_, now, err := state.Tip(view)
		if qerr = err; err != nil {
			return
		}
		// Any member (a payer too) signs its own transactions: it needs its next nonce and key.
		out.Patient, out.Provider = m.Role == chain.RolePatient, m.Role == chain.RoleProvider
		out.Role, out.Active = &m.Role, m.ActiveAt(now)
		out.NextNonce = rep.Mempool().NextNonce(m.Key, out.Nonce)
		out.Key = &m.Key
	})
	if err = errors.Join(err, qerr); err != nil {
		a.internal(w, "account", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) submitBatch(w http.ResponseWriter, r *http.Request) {
	data, ok := readBody(w, r, a.maxBatchBytes)
	if !ok {
		return
	}
	var req struct {
		Txs []string `json:"txs"`
	}
	if err := decodeJSON(data, &req); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if len(req.Txs) > MaxBatchTxs {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("batch has %d transactions, limit %d", len(req.Txs), MaxBatchTxs))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), apiTimeout)
	defer cancel()
	res := BatchResult{Hashes: []chain.Hash{}, Errors: []BatchError{}}
	if bs, ok := a.b.(batchSubmitter); ok {
		a.submitBatchAtOnce(ctx, w, bs, req.Txs, &res)
		return
	}
	for i, s := range req.Txs {
		tx, err := a.decodeTx(s)
		if err == nil {
			var h chain.Hash
			if h, err = a.b.Submit(ctx, tx); err == nil {
				res.Accepted++
				res.Hashes = append(res.Hashes, h)
				continue
			}
			if submitStatus(err) == http.StatusInternalServerError {
				a.internal(w, "submit batch", err)
				return
			}
			err = errors.New(submitMessage(err))
		}
		res.Errors = append(res.Errors, BatchError{Index: i, Error: err.Error()})
	}
	writeJSON(w, http.StatusOK, res)
}

// clientBacklogger is a Backend that refuses clients' transactions while its backlog is full
// (*Runner does, backlog.go).
type clientBacklogger interface {
	ClientBacklog() error
}

// batchSubmitter is a Backend that judges a batch off the replica's loop and adds it in one
// step (*Runner does).
type batchSubmitter interface {
	SubmitBatch(ctx context.Context, txs []*chain.Tx) ([]chain.Hash, []error, error)
}

func (a *API) submitBatchAtOnce(ctx context.Context, w http.ResponseWriter, bs batchSubmitter, raw []string, res *BatchResult) {
	txs := make([]*chain.Tx, 0, len(raw))
	var at []int
	for i, s := range raw {
		tx, err := a.decodeTx(s)
		if err != nil {
			res.Errors = append(res.Errors, BatchError{Index: i, Error: err.Error()})
			continue
		}
		txs, at = append(txs, tx), append(at, i)
	}
	hashes, errs, err := bs.SubmitBatch(ctx, txs)
	if err != nil {
		a.internal(w, "submit batch", err)
		return
	}
	if len(errs) > 0 && !slices.ContainsFunc(errs, func(e error) bool { return !errors.Is(e, ErrBacklog) }) {
		// The whole batch was refused for the backlog: one 503 says so plainly.
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, submitMessage(errs[0]))
		return
	}
	for j, i := range at {
		if errs[j] == nil {
			res.Accepted++
			res.Hashes = append(res.Hashes, hashes[j])
			continue
		}
		if submitStatus(errs[j]) == http.StatusInternalServerError {
			a.internal(w, "submit batch", errs[j])
			return
		}
		res.Errors = append(res.Errors, BatchError{Index: i, Error: submitMessage(errs[j])})
	}
	slices.SortFunc(res.Errors, func(x, y BatchError) int { return x.Index - y.Index })
	writeJSON(w, http.StatusOK, res)
}

func (a *API) internal(w http.ResponseWriter, what string, err error) {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		writeError(w, http.StatusServiceUnavailable, what+": the node did not answer in time (stopping or overloaded)")
		return
	}
	a.log.Error("api: "+what, "err", err)
	writeError(w, http.StatusInternalServerError, what+": internal error: "+err.Error())
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		code, data = http.StatusInternalServerError, []byte(`{"error":"encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(data, '\n'))
}

// ErrorJSON is the body of every error answer.
type ErrorJSON struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, ErrorJSON{Error: msg})
}
