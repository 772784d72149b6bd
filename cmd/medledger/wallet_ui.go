package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/medledger/medledger/billing"
	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/chain/state"
	"github.com/medledger/medledger/node/webui"
	"github.com/medledger/medledger/records"
	"github.com/medledger/medledger/sync/light"
	"github.com/medledger/medledger/wallet/keystore"
)

// The patient's page: `medledger wallet ui` serves the wallet's consents (grant, revoke), who
// read what and the patient's own records on a loopback address, for the browser of the person
// at this machine. Every page opens a verified ledger session exactly as a wallet command does
// (openLedger, patientState) and shows the same warnings; records are fetched as the patient
// and decrypted here.
//
// Who may use it: the server listens on loopback only, but other local users and any web page
// the browser opens can reach loopback. So the address printed at start carries a random key;
// opening it sets an HttpOnly, SameSite=Strict cookie, and every page needs that cookie, every
// form a token derived from it, and every request a Host of the loopback address itself (a
// DNS-rebinding page has another Host).

//go:embed walletui/*.html
var walletUIFS embed.FS

const walletCookie = "medledger_wallet"

func walletUICmd() *cobra.Command {
	var f walletFlags
	var listen string
	cmd := &cobra.Command{
		Use:   "ui --dir WALLET (--home HOME | --peer MULTIADDR --genesis FILE) [--listen 127.0.0.1:PORT]",
		Short: "Serve your wallet as a web page on this machine: consents (grant, revoke), who read what, your records",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			host, _, err := net.SplitHostPort(listen)
			if err != nil {
				return usagef("--listen %q: want HOST:PORT on loopback, e.g. 127.0.0.1:8700", listen)
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				return usagef("--listen %q: the wallet's page is served on a loopback address only (127.0.0.1 or ::1)", listen)
			}
			// The passphrase is asked once, here: the page never asks for it.
			w, err := f.open(cmd)
			if err != nil {
				return err
			}
			f.ledger.walletDir = f.dir
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// One session now, so that a wrong network or an unregistered wallet fails at once.
			s, err := openLedger(ctx, w, &f.ledger, f.home)
			if err != nil {
				return err
			}
			s.close()
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("wallet ui: %w", err)
			}
			srv, key, err := newWalletUI(w, &f.ledger, f.home, ln.Addr().String())
			if err != nil {
				ln.Close()
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wallet page for patient %s: http://%s/?key=%s\n", w.PatientID(), ln.Addr(), key)
			fmt.Fprintln(cmd.OutOrStdout(), "open it in a browser on this machine; stop with Ctrl-C")
			hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 3 * time.Minute,
				ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelWarn)}
			go func() {
				<-ctx.Done()
				sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = hs.Shutdown(sctx)
			}()
			if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:0", "loopback address to serve on (port 0: any free port)")
	return cmd
}

// walletUI serves the patient's page.
type walletUI struct {
	w      *keystore.Wallet
	ledger *ledgerFlags
	home   string
	addr   string // the listen address, which the Host header must name
	key    string // the secret of the printed address and of the cookie
	tmpl   map[string]*template.Template
	static http.Handler
	mux    *http.ServeMux
	// mu: one ledger session at a time (each opens a libp2p host with the patient's key, and a
	// node admits one connection per key anyway).
	mu sync.Mutex
}

func newWalletUI(w *keystore.Wallet, lf *ledgerFlags, home, addr string) (*walletUI, string, error) {
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", err
	}
	u := &walletUI{w: w, ledger: lf, home: home, addr: addr, key: hex.EncodeToString(raw), tmpl: map[string]*template.Template{},
		static: webui.Static("/static/"), mux: http.NewServeMux()}
	for _, name := range []string{"home", "record", "message"} {
		t, err := template.New("layout.html").Funcs(template.FuncMap{
			"short":   func(s fmt.Stringer) string { return short(s.String()) },
			"money":   money,
			"cents":   billing.FormatCents,
			"balance": signedMoney,
			"day":     dayOf,
			"reasons": func() []string {
				var out []string
				for r := chain.DisputeNotReceived; r <= chain.DisputeOther; r++ {
					out = append(out, r.String())
				}
				return out
			},
		}).ParseFS(walletUIFS, "walletui/layout.html", "walletui/"+name+".html")
		if err != nil {
			return nil, "", fmt.Errorf("wallet ui: template %s: %w", name, err)
		}
		u.tmpl[name] = t
	}
	u.mux.Handle("GET /static/", u.static)
	u.mux.HandleFunc("GET /{$}", u.overview)
	u.mux.HandleFunc("GET /records/{id}", u.record)
	u.mux.HandleFunc("POST /grant", u.grant)
	u.mux.HandleFunc("POST /revoke", u.revoke)
	u.mux.HandleFunc("POST /dispute", u.dispute)
	return u, u.key, nil
}

func (u *walletUI) csrf() string {
	m := hmac.New(sha256.New, []byte(u.key))
	m.Write([]byte("csrf"))
	return hex.EncodeToString(m.Sum(nil))
}

func (u *walletUI) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	webui.SecurityHeaders(rw.Header())
	if r.Host != u.addr {
		http.Error(rw, "this page answers only at "+u.addr, http.StatusMisdirectedRequest)
		return
	}
	if k := r.URL.Query().Get("key"); k != "" && r.Method == http.MethodGet && r.URL.Path == "/" {
		if !hmac.Equal([]byte(k), []byte(u.key)) {
			http.Error(rw, "wrong key: use the address `medledger wallet ui` printed", http.StatusForbidden)
			return
		}
		http.SetCookie(rw, &http.Cookie{Name: walletCookie, Value: u.key, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(rw, r, "/", http.StatusSeeOther)
		return
	}
	if !isStatic(r) {
		c, err := r.Cookie(walletCookie)
		if err != nil || !hmac.Equal([]byte(c.Value), []byte(u.key)) {
			http.Error(rw, "open the address `medledger wallet ui` printed (it carries this page's key)", http.StatusUnauthorized)
			return
		}
		if r.Method == http.MethodPost && !hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(u.csrf())) {
			http.Error(rw, "this form did not come from this page (CSRF check failed): reload and try again", http.StatusForbidden)
			return
		}
	}
	u.mux.ServeHTTP(rw, r)
}

func isStatic(r *http.Request) bool {
	return r.Method == http.MethodGet && len(r.URL.Path) > 8 && r.URL.Path[:8] == "/static/"
}

// walletPage is what the templates get.
type walletPage struct {
	Title    string
	Patient  string
	CSRF     string
	Verified string
	Warnings []string
	Alerts   []string
	Flash    string
	Error    string
	Data     any
}

func (u *walletUI) render(rw http.ResponseWriter, code int, name string, p walletPage) {
	p.Patient, p.CSRF = u.w.PatientID().String(), u.csrf()
	var buf bytes.Buffer
	if err := u.tmpl[name].Execute(&buf, p); err != nil {
		http.Error(rw, "the page could not be drawn: "+err.Error(), http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "text/html; charset=utf-8")
	rw.WriteHeader(code)
	_, _ = rw.Write(buf.Bytes())
}

// session opens a verified session and proves the patient's state, as every wallet command does.
func (u *walletUI) session(ctx context.Context) (*ledgerSession, *light.PatientState, error) {
	s, err := openLedger(ctx, u.w, u.ledger, u.home)
	if err != nil {
		return nil, nil, err
	}
	ps, err := s.patientState(ctx, u.w)
	if err != nil {
		s.close()
		return nil, nil, err
	}
	return s, ps, nil
}

// verifiedLine is what printWarnings prints first.
func verifiedLine(s *ledgerSession) string {
	v := s.verification()
	return fmt.Sprintf("Verified against block %d (header %s) from %d node(s).", v.Height+1, v.Header.Short(), len(v.Nodes))
}

func (u *walletUI) overview(rw http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	p := walletPage{Title: "My health records"}
	switch {
	case r.URL.Query().Get("granted") != "":
		p.Flash = "Consent given: it is on the ledger."
	case r.URL.Query().Get("revoked") != "":
		p.Flash = "Consent withdrawn. Records the provider already read cannot be recalled."
	case r.URL.Query().Get("disputed") != "":
		p.Flash = "Dispute recorded on the ledger: the payer and the practice see it, and the payer's next decision answers it."
	}
	s, ps, err := u.session(r.Context())
	if err != nil {
		p.Error = err.Error()
		u.render(rw, http.StatusBadGateway, "home", p)
		return
	}
	defer s.close()
	consents, err := records.ConsentsJSON(ps.View(), ps.IDs(state.LogConsent))
	if err == nil {
		var accesses []records.AccessJSON
		var recs []records.RecordJSON
		if accesses, err = provedAccesses(ps, u.w); err == nil {
			recs, err = records.RecordsJSON(ps.View(), ps.IDs(state.LogRecord))
		}
		bill := provedBilling(ps.Items, u.w.PatientID(), ps.Header.Time)
		p.Data = map[string]any{"Consents": consents, "Accesses": accesses, "Records": recs, "Billing": bill, "Claims": provedClaims(ps.Items)}
		for _, m := range bill.Memberships {
			if m.PastDue {
				p.Alerts = append(p.Alerts, fmt.Sprintf("PAST DUE since %s: membership %s at practice %s owes %s", dayOf(m.PastDueSince), short(m.ID.String()), m.Practice, signedMoney(m.BalanceCents, m.Currency)))
			}
		}
		for _, c := range consents {
			if c.Emergency {
				p.Alerts = append(p.Alerts, fmt.Sprintf("EMERGENCY ACCESS by provider %s at %s (%s)%s", c.Grantee, c.GrantedTime, c.Reason, emergencyNote(c.CoSigned, c.AfterRevocation)))
			}
		}
		for _, a := range accesses {
			if a.Emergency && a.Outcome == chain.AccessServed.String() {
				p.Alerts = append(p.Alerts, fmt.Sprintf("EMERGENCY READ of record %s by provider %s (%s) at %s (%s)%s", short(a.Record.String()), a.Accessor, a.Role, a.Time, a.EmergencyReason, emergencyNote(a.CoSigned, a.AfterRevocation)))
			}
		}
	}
	if err != nil {
		p.Error = err.Error()
	}
	p.Verified, p.Warnings = verifiedLine(s), s.verification().Warnings
	u.render(rw, http.StatusOK, "home", p)
}

func (u *walletUI) record(rw http.ResponseWriter, r *http.Request) {
	id, err := chain.ParseHash(r.PathValue("id"))
	if err != nil {
		u.render(rw, http.StatusBadRequest, "message", walletPage{Title: "No such record", Error: "a record id is 64 hexadecimal digits"})
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ps, err := u.session(r.Context())
	if err != nil {
		u.render(rw, http.StatusBadGateway, "message", walletPage{Title: "Record", Error: err.Error()})
		return
	}
	defer s.close()
	p := walletPage{Title: "Record", Verified: verifiedLine(s), Warnings: s.verification().Warnings}
	plain, err := readOwnRecord(r.Context(), s, u.w, ps, id)
	if err != nil {
		p.Error = err.Error()
		u.render(rw, http.StatusBadGateway, "message", p)
		return
	}
	var res map[string]any
	if err := json.Unmarshal(plain, &res); err != nil {
		p.Error = "the record is not JSON: " + err.Error()
		u.render(rw, http.StatusBadGateway, "message", p)
		return
	}
	view := webui.RenderResource(res)
	p.Title, p.Data = view.Title, view
	u.render(rw, http.StatusOK, "record", p)
}

// backWith redirects to the page after a change, with a flag the page turns into its own text.
func backWith(rw http.ResponseWriter, r *http.Request, key string) {
	http.Redirect(rw, r, "/?"+url.Values{key: {"1"}}.Encode(), http.StatusSeeOther)
}

// refused answers a change that did not happen.
func (u *walletUI) refused(rw http.ResponseWriter, code int, msg string) {
	u.render(rw, code, "message", walletPage{Title: "Not done", Error: msg})
}

func (u *walletUI) grant(rw http.ResponseWriter, r *http.Request) {
	g, err := buildGrant(r.PostFormValue("to"), r.PostFormValue("types"), "", "TREAT", r.PostFormValue("expires"), time.Now())
	if err != nil {
		u.refused(rw, http.StatusBadRequest, "Consent not given: "+err.Error())
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	s, err := openLedger(r.Context(), u.w, u.ledger, u.home)
	if err != nil {
		u.refused(rw, http.StatusBadGateway, err.Error())
		return
	}
	defer s.close()
	if _, err := s.submit(r.Context(), u.w, chain.TxConsentGrant, g); err != nil {
		u.refused(rw, http.StatusBadRequest, "Consent not given: "+err.Error())
		return
	}
	backWith(rw, r, "granted")
}

func (u *walletUI) revoke(rw http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	defer u.mu.Unlock()
	s, err := openLedger(r.Context(), u.w, u.ledger, u.home)
	if err != nil {
		u.refused(rw, http.StatusBadGateway, err.Error())
		return
	}
	defer s.close()
	if _, _, err := revokeConsents(r.Context(), s, u.w, "", r.PostFormValue("consent")); err != nil {
		u.refused(rw, http.StatusBadRequest, "Consent not withdrawn: "+err.Error())
		return
	}
	backWith(rw, r, "revoked")
}

// dispute records the patient's dispute of a claim in their name, checked against the proved
// state first as `wallet claims dispute` does.
func (u *walletUI) dispute(rw http.ResponseWriter, r *http.Request) {
	id, err := chain.ParseHash(r.PostFormValue("claim"))
	if err != nil {
		u.refused(rw, http.StatusBadRequest, "Not disputed: a claim id is 64 hexadecimal digits")
		return
	}
	reason, err := parseDisputeReason(r.PostFormValue("reason"))
	if err != nil {
		u.refused(rw, http.StatusBadRequest, "Not disputed: "+err.Error())
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	s, ps, err := u.session(r.Context())
	if err != nil {
		u.refused(rw, http.StatusBadGateway, err.Error())
		return
	}
	defer s.close()
	if _, err := disputeClaim(r.Context(), s, ps, u.w, id, reason); err != nil {
		u.refused(rw, http.StatusBadRequest, "Not disputed: "+err.Error())
		return
	}
	backWith(rw, r, "disputed")
}
