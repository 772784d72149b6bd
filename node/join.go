package node

import (
	"context"
	"time"

	"github.com/medledger/medledger/consensus/replica"
)

// licencePoll is how often a node started without a licence looks for one.
const licencePoll = 2 * time.Second

// watchLicence waits for the licence file of a node that started without one (a practice
// whose licence arrives while its node runs: medledger provider register installs it) and
// gives it to the p2p host as its ticket, so that members let the node in to sync and register.
// The record service registers the provider from the same file.
func (n *Node) watchLicence(ctx context.Context) {
	path := Resolve(string(n.home), n.cfg.Records.Licence)
	n.log.Warn("no licence: the network's members refuse this node until a licence is installed (medledger provider register, or payer register, --home HOME --licence FILE)", "file", path)
	t := time.NewTicker(licencePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ticket, err := licenceTicket(path)
		if err != nil {
			n.log.Error("licence unreadable", "file", path, "err", err)
			continue
		}
		if ticket == nil {
			continue
		}
		if err := n.host.SetTicket(ticket); err != nil {
			n.log.Error("licence refused as ticket", "file", path, "err", err)
			continue
		}
		n.log.Info("licence installed: presenting it to the bootstrap peers", "file", path)
		return
	}
}

// SyncProgress is how far the node's chain is from the head its peers show.
type SyncProgress struct {
	// Height is the committed height; Target the highest height peers claim (at least Height).
	Height, Target uint64
	// Peers is the number of connected peers.
	Peers int
}

// Behind is how many blocks the node lacks.
func (p SyncProgress) Behind() uint64 { return p.Target - p.Height }

// SyncProgress reports the node's height against its peers' (replica.SyncTarget).
func (n *Node) SyncProgress(ctx context.Context) (SyncProgress, error) {
	var p SyncProgress
	err := n.runner.Query(ctx, func(r *replica.Replica) {
		p.Height, p.Target = r.Height(), r.SyncTarget()
	})
	p.Peers = len(n.host.Peers())
	return p, err
}
