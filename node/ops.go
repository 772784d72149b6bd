package node

import (
	"context"
	"errors"
	"net/http"

	"github.com/medledger/medledger/consensus/replica"
	"github.com/medledger/medledger/node/metrics"
)

// newMetrics returns the node's registry, reading its snapshot from the replica (through the
// runner's queue, bounded by the scrape's deadline), the p2p host and the record service. The
// host and service are read once they exist: the registry is made before them, since libp2p
// registers its own series into it when the host starts.
func (n *Node) newMetrics() *metrics.Metrics {
	return metrics.New(func(ctx context.Context) (metrics.Snapshot, error) {
		s := metrics.Snapshot{ReplicationBacklog: -1}
		if n.runner == nil || n.host == nil {
			return s, errors.New("node: not assembled yet")
		}
		err := n.runner.Query(ctx, func(rep *replica.Replica) {
			s.Height = rep.Height()
			s.SyncTarget = rep.SyncTarget()
			s.Round = rep.Engine().Round()
			s.MempoolTxs, s.MempoolBytes = rep.Mempool().Len(), rep.Mempool().Bytes()
		})
		if err != nil {
			return s, err
		}
		s.Peers = n.host.PeerClasses()
		for _, v := range n.host.TopicVerdicts() {
			s.Gossip = append(s.Gossip, metrics.TopicVerdicts{Topic: v.Topic, Accepted: v.Accepted, Ignored: v.Ignored, Rejected: v.Rejected})
		}
		if n.records != nil {
			s.ReplicationBacklog = n.records.ReplicationBacklog()
		}
		return s, nil
	})
}

// probes are the checks behind /healthz and /readyz.
func (n *Node) probes() metrics.Probes {
	return metrics.Probes{
		Alive: func(ctx context.Context) error {
			// The store is readable when its head block (or, at height 0, its genesis) reads.
			s := n.store
			if h := s.Height(); h > 0 {
				_, err := s.Block(h)
				return err
			}
			_, err := s.Genesis()
			return err
		},
		P2PUp:     func() bool { return len(n.host.Addrs()) > 0 },
		NeedPeers: len(n.cfg.P2P.Bootstrap) > 0,
	}
}

// recordOps maps the API's record routes to the operation they count as.
var recordOps = map[string]string{
	"POST /v1/patients/{patient}/records": metrics.OpImport,
	"GET /v1/records/{id}":                metrics.OpRead,
	"GET /v1/patients/{patient}/export":   metrics.OpExport,
	"POST /v1/records/{id}/amend":         metrics.OpAmend,
	// The FHIR face (fhirapi.go): searches, history and $everything read contents too.
	"GET /fhir/{type}":                     metrics.OpRead,
	"GET /fhir/{type}/{id}":                metrics.OpRead,
	"GET /fhir/{type}/{id}/{op}":           metrics.OpRead,
	"GET /fhir/{type}/{id}/_history/{vid}": metrics.OpRead,
	"POST /fhir":                           metrics.OpImport,
	"POST /fhir/{$}":                       metrics.OpImport,
}

// countRecordOp counts a served request on a record route by its answer's status.
func countRecordOp(m *metrics.Metrics, pattern string, status int) {
	op, ok := recordOps[pattern]
	if !ok {
		return
	}
	outcome := metrics.OutcomeOK
	switch {
	case status == 0 || status < 300:
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		outcome = metrics.OutcomeRefused
	case status < 500:
		outcome = metrics.OutcomeInvalid
	default:
		outcome = metrics.OutcomeError
	}
	m.Record(op, outcome)
}
