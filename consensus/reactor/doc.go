// Package reactor is the consensus glue beside the replica, as CometBFT keeps a reactor beside
// its core: it carries replica messages over the p2p host, which itself knows only topics,
// bytes and peer ids.
//
// A Reactor implements the node's Transport. Transactions, proposals and votes are published
// on their gossip topics (/medledger/<chain>/{txs,proposals,votes}/2); a proposal over the
// gossip limit, and every re-send, goes directly to each connected peer over the host's direct
// protocol (gossip names a message by its payload's hash, so a payload published again would be
// dropped as seen); sync requests and answers go directly to one peer.
//
// Every inbound payload, gossiped or direct, is judged by the replica's Gate before anything is
// relayed or queued: cheap checks first (form, height, round, proposer of the round,
// membership), the signature next, and for a proposal the block's transactions are decoded only
// once its signed header has passed; a direct payload longer than p2p.DirectHeadBytes is judged
// from its head before the rest is read, so a multi-MiB proposal refused from its signed header
// costs no more than a small one, and a long sync answer is read only from a peer the replica
// asked for blocks; a peer sending more than two such useless long payloads a second earns
// strikes. A vote accepted over the direct protocol is published on the
// votes topic, so that conflicting votes sent to different peers meet and become evidence. The rules for Accept, Ignore and Reject are documented on
// judge and its helpers (judge.go). Payloads already delivered are recognised by their hash and
// dropped before any check (seen.go). A message for a height far ahead is not relayed but handed
// to the replica as a hint, rate-limited per peer, so a lagging node asks for blocks; a peer
// whose transactions keep being ignored as junk collects strikes (junk.go).
package reactor
