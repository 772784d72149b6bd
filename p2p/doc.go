// Package p2p is MedLedger's libp2p transport: the node's host (TCP and QUIC, Noise, yamux, the
// resource manager on, relay, NAT port mapping and mDNS off), its persistent identity, gossipsub
// topics for transactions, proposals and votes with one validator each and peer scoring, a direct
// stream protocol for sync and for proposals too large for gossip, and a connection gater that
// refuses peers after repeated misbehaviour.
//
// Everything on the wire is namespaced by network (chain id) and versioned:
//
//	/medledger/<chain>/txs/1          gossip: transactions
//	/medledger/<chain>/proposals/1    gossip: proposal + block (encodings up to MaxGossipProposalBytes)
//	/medledger/<chain>/votes/1        gossip: prevotes and precommits
//	/medledger/<chain>/direct/1.0.0   stream: one length-prefixed replica.Message per stream
//	/medledger/<chain>/kad/1.0.0      stream: Kademlia DHT (provider records and peer routing)
//
// Every host runs a Kademlia DHT (server mode; client mode for wallets; off with DisableDHT)
// seeded from the bootstrap peers, with no values and no public bootstrap peers, accepting
// private and loopback addresses. Nodes advertise themselves under the network's rendezvous key
// and connect to the other advertisers, so one bootstrap peer is enough to reach the whole
// network. Provide and FindHolders announce and look up which peers hold a blob or record, by
// its 32-byte id (see HashCID).
//
// A Host implements node.Transport: Broadcast, Send, Inbox and Penalize never block the caller;
// what cannot be queued is dropped and counted (consensus recovers lost messages).
//
// Not yet here (see DESIGN.md): admission by provider registration in InterceptSecured,
// re-providing records periodically (callers provide again), AutoNAT, hole punching and relay,
// mDNS, and pulling big block bodies by id.
package p2p
