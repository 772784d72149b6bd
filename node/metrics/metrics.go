// Package metrics is a node's Prometheus registry and its probes: the node's own series (height,
// peers, blocks, mempool, consensus rounds, gossip verdicts, record operations, replication,
// sync), libp2p's beside them in the same registry, kad-dht's (OpenTelemetry, bridged once per
// process) gathered with them, and the /metrics, /healthz and /readyz
// handlers. Every label takes a value from a small fixed set: no peer id, patient id or record
// id ever becomes a label (docs/operations.md lists every series).
package metrics

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Snapshot is what a node reports at each scrape: values it already keeps, read when asked.
type Snapshot struct {
	Height       uint64
	SyncTarget   uint64 // the highest committed height peers have shown
	Round        uint32 // the consensus round of the height being decided
	MempoolTxs   int
	MempoolBytes int
	// Peers counts connected peers by class (member, candidate, wallet, stranger).
	Peers map[string]int
	// Gossip is the validators' verdicts per topic since start.
	Gossip []TopicVerdicts
	// ReplicationBacklog is the number of authored records not yet confirmed by every holder;
	// -1 when the node has no record service.
	ReplicationBacklog int
}

// TopicVerdicts are one gossip topic's validator answers.
type TopicVerdicts struct {
	Topic                       string
	Accepted, Ignored, Rejected uint64
}

// SnapshotFunc reads a Snapshot; it must answer within ctx.
type SnapshotFunc func(ctx context.Context) (Snapshot, error)

// scrapeTimeout bounds a snapshot: a node too busy to answer reports its event counters alone.
const scrapeTimeout = 2 * time.Second

// Record operations and their outcomes, the only values of their labels.
const (
	OpImport = "import"
	OpRead   = "read"
	OpExport = "export"
	OpAmend  = "amend"

	OutcomeOK      = "ok"
	OutcomeRefused = "refused" // consent or permission refused the caller
	OutcomeInvalid = "invalid" // the request or its FHIR content was wrong
	OutcomeError   = "error"   // the node failed
)

// Metrics is one node's registry with its series.
type Metrics struct {
	reg  *prometheus.Registry
	snap SnapshotFunc
	// gather is what /metrics serves: reg and the process's OpenTelemetry registry (kad-dht).
	gather prometheus.Gatherers

	blockInterval prometheus.Histogram
	commitRound   prometheus.Histogram
	blocks        prometheus.Counter
	txs           prometheus.Counter
	records       *prometheus.CounterVec

	mu          sync.Mutex
	lastBlockMs int64

	height, syncTarget, round, mempoolTxs, mempoolBytes, backlog, scrapeErrors *prometheus.Desc
	peers, gossip                                                              *prometheus.Desc
}

// New returns a registry holding the Go runtime's and the process's collectors and the node's
// series, which read snap at each scrape.
func New(snap SnapshotFunc) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		reg:  reg,
		snap: snap,
		blockInterval: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "medledger_block_interval_seconds", Help: "Time between the block times of consecutive committed blocks.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300},
		}),
		commitRound: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "medledger_consensus_commit_round", Help: "The consensus round at which each committed block was decided (0 = first round).",
			Buckets: []float64{0, 1, 2, 3, 5, 8, 13},
		}),
		blocks: prometheus.NewCounter(prometheus.CounterOpts{Name: "medledger_blocks_committed_total", Help: "Blocks this node committed (executed) since start."}),
		txs:    prometheus.NewCounter(prometheus.CounterOpts{Name: "medledger_txs_committed_total", Help: "Transactions in the blocks this node committed since start."}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "medledger_record_requests_total", Help: "Record operations through the node's API, by operation and outcome.",
		}, []string{"op", "outcome"}),
		height:       prometheus.NewDesc("medledger_height", "The committed height of the node's chain.", nil, nil),
		syncTarget:   prometheus.NewDesc("medledger_sync_target_height", "The highest committed height peers have shown this node; the node is syncing while it is above medledger_height.", nil, nil),
		round:        prometheus.NewDesc("medledger_consensus_round", "The consensus round of the height being decided.", nil, nil),
		mempoolTxs:   prometheus.NewDesc("medledger_mempool_txs", "Pending transactions in the mempool.", nil, nil),
		mempoolBytes: prometheus.NewDesc("medledger_mempool_bytes", "Encoded size of the pending transactions.", nil, nil),
		backlog:      prometheus.NewDesc("medledger_replication_backlog_records", "Records this node authored that not every assigned holder has confirmed.", nil, nil),
		scrapeErrors: prometheus.NewDesc("medledger_scrape_snapshot_ok", "1 if the node answered this scrape's snapshot in time, 0 if not (the gauges above are then absent).", nil, nil),
		peers:        prometheus.NewDesc("medledger_peers", "Connected peers by admission class.", []string{"class"}, nil),
		gossip:       prometheus.NewDesc("medledger_gossip_validations_total", "Gossip payloads from other peers judged by the topic's validator, by topic and verdict.", []string{"topic", "verdict"}, nil),
	}
	// Every outcome of every operation exists from the start, at 0, so rates work at once.
	for _, op := range []string{OpImport, OpRead, OpExport, OpAmend} {
		for _, o := range []string{OutcomeOK, OutcomeRefused, OutcomeInvalid, OutcomeError} {
			m.records.WithLabelValues(op, o)
		}
	}
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.blockInterval, m.commitRound, m.blocks, m.txs, m.records, (*snapshotCollector)(m),
	)
	m.gather = prometheus.Gatherers{reg}
	if o, err := otelGatherer(); err == nil {
		m.gather = append(m.gather, o)
	}
	return m
}

// Registry is the registry libp2p's metrics go into as well (p2p.Config.Registerer).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Committed records a committed block: its block time (Unix ms), the round its certificate
// names and its transaction count. Call it in commit order.
func (m *Metrics) Committed(timeMs int64, round uint32, txs int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.lastBlockMs != 0 && timeMs >= m.lastBlockMs {
		m.blockInterval.Observe(float64(timeMs-m.lastBlockMs) / 1000)
	}
	m.lastBlockMs = timeMs
	m.commitRound.Observe(float64(round))
	m.blocks.Inc()
	m.txs.Add(float64(txs))
}

// Record counts one record operation; op and outcome are among the constants above (anything
// else is counted as op "other" or outcome "error", keeping the label set bounded).
func (m *Metrics) Record(op, outcome string) {
	switch op {
	case OpImport, OpRead, OpExport, OpAmend:
	default:
		op = "other"
	}
	switch outcome {
	case OutcomeOK, OutcomeRefused, OutcomeInvalid, OutcomeError:
	default:
		outcome = OutcomeError
	}
	m.records.WithLabelValues(op, outcome).Inc()
}

// Handler serves the registry in Prometheus' text format (or OpenMetrics when asked).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gather, promhttp.HandlerOpts{
		Registry: m.reg, EnableOpenMetrics: true, MaxRequestsInFlight: 4, Timeout: 10 * time.Second,
	})
}

// snapshotCollector reads the node's snapshot at each scrape.
type snapshotCollector Metrics

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.height, c.syncTarget, c.round, c.mempoolTxs, c.mempoolBytes, c.backlog, c.scrapeErrors, c.peers, c.gossip} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	s, err := c.snap(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeErrors, prometheus.GaugeValue, 1)
	ch <- prometheus.MustNewConstMetric(c.height, prometheus.GaugeValue, float64(s.Height))
	ch <- prometheus.MustNewConstMetric(c.syncTarget, prometheus.GaugeValue, float64(max(s.SyncTarget, s.Height)))
	ch <- prometheus.MustNewConstMetric(c.round, prometheus.GaugeValue, float64(s.Round))
	ch <- prometheus.MustNewConstMetric(c.mempoolTxs, prometheus.GaugeValue, float64(s.MempoolTxs))
	ch <- prometheus.MustNewConstMetric(c.mempoolBytes, prometheus.GaugeValue, float64(s.MempoolBytes))
	if s.ReplicationBacklog >= 0 {
		ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(s.ReplicationBacklog))
	}
	for class, n := range s.Peers {
		ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, float64(n), class)
	}
	for _, g := range s.Gossip {
		ch <- prometheus.MustNewConstMetric(c.gossip, prometheus.CounterValue, float64(g.Accepted), g.Topic, "accept")
		ch <- prometheus.MustNewConstMetric(c.gossip, prometheus.CounterValue, float64(g.Ignored), g.Topic, "ignore")
		ch <- prometheus.MustNewConstMetric(c.gossip, prometheus.CounterValue, float64(g.Rejected), g.Topic, "reject")
	}
}
