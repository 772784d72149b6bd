// Package docker holds the docker testnet's end-to-end test (make testnet-docker): four
// authorities and two practice full nodes in containers of a FROM scratch image, on their own
// compose network, the record story across containers, then kill, pause, disconnect and a 2|2
// partition, ending with every node on the same head and nothing committed lost. It needs a
// Docker daemon, docker-compose, root (nsenter, iptables in the containers' network namespaces)
// and MEDLEDGER_DOCKER=1; without the variable it is skipped.
package docker
