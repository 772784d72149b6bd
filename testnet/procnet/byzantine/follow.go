package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/medledger/medledger/chain"
	"github.com/medledger/medledger/node"
)

// tracker follows the height being decided and its round: from the votes and proposals honest
// nodes gossip (while they still gossip to us) and from an honest node's API, if one is given.
type tracker struct {
	mu     sync.Mutex
	height uint64
	round  uint32
	hashes map[uint64]chain.Hash // a block hash precommitted or committed at a height
	set    *chain.AuthoritySet   // the set deciding the height, when the API told us
}

func newTracker(set *chain.AuthoritySet) *tracker {
	return &tracker{hashes: make(map[uint64]chain.Hash), set: set, height: 1}
}

// saw notes a consensus message for height h, round r; block, if not zero, is a hash an
// authority precommitted at h.
func (t *tracker) saw(h uint64, r uint32, block chain.Hash) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case h > t.height:
		t.height, t.round = h, r
	case h == t.height && r > t.round:
		t.round = r
	}
	if !block.IsZero() {
		t.hashes[h] = block
	}
	for k := range t.hashes {
		if k+8 < t.height {
			delete(t.hashes, k)
		}
	}
}

// position is the height being decided, its round, and the hash of the block below it (zero
// if unknown).
func (t *tracker) position() (uint64, uint32, chain.Hash) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.height, t.round, t.hashes[t.height-1]
}

// authorities is the set deciding the current height as far as we know.
func (t *tracker) authorities() *chain.AuthoritySet {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.set
}

func (t *tracker) member(k chain.PubKey) bool { return t.authorities().Contains(k) }

// pollAPI reads GET /v1/status from an honest node four times a second until ctx ends (gossip
// tells the height sooner while honest nodes still talk to us).
func (t *tracker) pollAPI(ctx context.Context, addr, token string, log *slog.Logger) {
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		if err := t.pollOnce(ctx, client, addr, token); err != nil && ctx.Err() == nil {
			log.Debug("byzantine: poll status", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (t *tracker) pollOnce(ctx context.Context, client *http.Client, addr, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/v1/status", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	var st node.StatusJSON
	if err := json.Unmarshal(body, &st); err != nil {
		return err
	}
	var last chain.Hash
	if st.LastBlockHash != nil {
		last = *st.LastBlockHash
	}
	t.saw(st.Height+1, st.Round, chain.Hash{})
	members := make([]chain.Authority, len(st.Authorities))
	for i, m := range st.Authorities {
		members[i] = chain.Authority{Key: m.Key, Name: m.Name}
	}
	set, err := chain.NewAuthoritySet(members)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !last.IsZero() {
		t.hashes[st.Height] = last
	}
	if err == nil && st.Height+1 >= t.height {
		t.set = set
	}
	return nil
}
