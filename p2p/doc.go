// Package p2p is MedLedger's libp2p host: its persistent identity, TCP and QUIC with Noise and
// yamux, the resource manager on (relay, NAT port mapping and mDNS off), gossipsub with peer
// scoring, a direct stream protocol, a Kademlia DHT, and a connection gater that refuses peers
// after repeated misbehaviour. It carries opaque payloads and peer ids: what the payloads mean,
// and whether one is acceptable, is the caller's (consensus/reactor for replica messages).
//
// The caller joins gossip topics with one validator each (JoinTopic) and sets the direct
// protocol's validator (HandleDirect). A validator answers Accept, Ignore or Reject (see
// Verdict); what it accepts, with the value it decoded, goes to the inbox (Inbox), which is
// bounded by count and by bytes, in total and per delivering peer. Publish, SendDirect and
// SendDirectAll never block: what cannot be queued within the bounds (bytes of the publish
// queue; sends in flight in total and per peer) is dropped and counted in Stats.
//
// Pubsub names a message by the hash of its payload: the same payload is one message, relayed
// and validated once per node however often anyone publishes it. To reach peers with a payload
// again (a re-send), send it directly.
//
// Everything on the wire is namespaced by network (chain id) and versioned:
//
//	/medledger/<chain>/<topic>/<version>  gossip: one topic per joined TopicConfig
//	/medledger/<chain>/direct/1.0.0      stream: one length-prefixed payload per stream
//	/medledger/<chain>/kad/1.0.0         stream: Kademlia DHT (provider records and peer routing)
//
// A direct stream is served as a stream handler should be: the per-peer rate limit before a
// byte is read, a read deadline, a length prefix checked against the frame limit
// (Config.MaxDirectBytes), then, for a payload longer than DirectHeadBytes, the head validator
// (HandleDirectHead) on its first bytes, so a payload refused from its head is never read in
// full; then memory reserved with the resource manager for the whole payload, then the
// validator. A malformed frame or a rejected payload resets the stream and bans the sender.
//
// Penalize records a strike, or bans at once for a reason marked Invalid (data no honest peer
// sends); a Reject on gossip or on the direct protocol is such data. Past 20 strikes a minute
// a peer is disconnected and refused for ten minutes, and every strike lowers its gossip score; so is a peer whose gossip score falls below
// the graylist threshold (five rejected gossip messages), which pubsub would otherwise keep
// reading without judging.
//
// Every host runs a Kademlia DHT (server mode; client mode for wallets; off with DisableDHT)
// seeded from the bootstrap peers, with no values and no public bootstrap peers, accepting
// private and loopback addresses. Nodes advertise themselves under the network's rendezvous key
// and connect to the other advertisers, so one bootstrap peer is enough to reach the whole
// network. Provide and FindHolders announce and look up which peers hold a blob or record, by
// its 32-byte id (see HashCID); other stream protocols (the record blob exchange) register on
// LibP2P().
//
// Admission (see Admission, Class and docs/security.md): the node classes peers; the host
// enforces its policy at InterceptSecured, at every stream, on gossip and in the DHT.
//
// Not yet here (see DESIGN.md):
// AutoNAT, hole punching and relay, mDNS, and pulling big payloads by id.
package p2p
