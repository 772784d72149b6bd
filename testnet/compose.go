package testnet

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Docker files a testnet directory holds with --docker.
const (
	ComposeFile    = "docker-compose.yml"
	DockerfileName = "Dockerfile"
	// ImageBinary is the static binary the Dockerfile copies: build it with CGO_ENABLED=0 into
	// the testnet directory under this name (make testnet-docker does).
	ImageBinary = "medledger"
	// containerDir is where the testnet directory is mounted in every container.
	containerDir = "/testnet"
)

// dockerfile builds an image of the static binary alone: nothing is pulled (no base image, no
// "# syntax=" line, which would fetch a frontend), and the binary needs no libc.
const dockerfile = `# MedLedger testnet image: the static binary (CGO_ENABLED=0) in an empty root filesystem.
FROM scratch
COPY ` + ImageBinary + ` /medledger
ENTRYPOINT ["/medledger"]
`

// DockerOptions shape the compose file.
type DockerOptions struct {
	// Image is the image every service runs (built from the Dockerfile).
	Image string
	// Subnet is the compose network's IPv4 subnet; it must hold the nodes' addresses.
	Subnet string
	// User, if set ("UID:GID"), runs the nodes as that user, so the files they write in the
	// mounted testnet directory belong to the one who made it; empty runs them as root.
	User string
}

// ContainerHome is node i's home inside its container.
func ContainerHome(i int) string { return fmt.Sprintf("%s/node%d", containerDir, i) }

// ContainerPath is where a file of the testnet directory is seen inside the containers.
func ContainerPath(rel string) string { return containerDir + "/" + filepath.ToSlash(rel) }

// WriteDocker writes DIR/docker-compose.yml and DIR/Dockerfile for the testnet o wrote into
// dir: one service per node (node0 …), each running "medledger node" on its home, with the
// testnet directory mounted at /testnet, on one network of fixed addresses (o.StartingIP on) or
// names (o.HostnamePrefix). The compose file is version 2.4, which docker-compose 1.29 and
// "docker compose" both read. No port is published: a node's API listens on its container's
// loopback address only (config.go refuses any other), so clients reach it with "docker exec"
// (the binary's own commands) or from the container's network namespace.
func WriteDocker(dir string, o Options, d DockerOptions) error {
	if o.StartingIP == "" && o.HostnamePrefix == "" {
		return fmt.Errorf("testnet: --docker needs --starting-ip or --hostname-prefix: 127.0.0.1 is each container's own")
	}
	if d.Image == "" {
		return fmt.Errorf("testnet: docker image name is empty")
	}
	total := o.Authorities + o.FullNodes
	var b strings.Builder
	b.WriteString("# Written by medledger testnet init --docker. Build the image first (see README: make testnet-docker).\n")
	b.WriteString("version: \"2.4\"\nservices:\n")
	for i := range total {
		name := fmt.Sprintf("node%d", i)
		if o.HostnamePrefix != "" && o.StartingIP == "" {
			name = fmt.Sprintf("%s%d", o.HostnamePrefix, i)
		}
		fmt.Fprintf(&b, "  %s:\n", name)
		fmt.Fprintf(&b, "    image: %q\n", d.Image)
		fmt.Fprintf(&b, "    hostname: %s\n", name)
		fmt.Fprintf(&b, "    command: [\"node\", \"--home\", %q]\n", ContainerHome(i))
		if d.User != "" {
			fmt.Fprintf(&b, "    user: %q\n", d.User)
		}
		b.WriteString("    stop_grace_period: 10s\n")
		fmt.Fprintf(&b, "    volumes:\n      - \"./:%s\"\n", containerDir)
		b.WriteString("    networks:\n      medledger:\n")
		if o.StartingIP != "" {
			ip, err := nthIP(o.StartingIP, i)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, "        ipv4_address: %s\n", ip)
		}
	}
	b.WriteString("networks:\n  medledger:\n    driver: bridge\n")
	if o.StartingIP != "" {
		subnet := d.Subnet
		if subnet == "" {
			start, err := netip.ParseAddr(o.StartingIP)
			if err != nil {
				return fmt.Errorf("testnet: starting IP %q: %w", o.StartingIP, err)
			}
			p, _ := start.Prefix(24)
			subnet = p.String()
		}
		pfx, err := netip.ParsePrefix(subnet)
		if err != nil {
			return fmt.Errorf("testnet: subnet %q: %w", subnet, err)
		}
		for i := range total {
			ip, _ := nthIP(o.StartingIP, i)
			if !pfx.Contains(netip.MustParseAddr(ip)) {
				return fmt.Errorf("testnet: node %d's address %s is outside the subnet %s", i, ip, subnet)
			}
		}
		fmt.Fprintf(&b, "    ipam:\n      config:\n        - subnet: %s\n", pfx.Masked())
	}
	if err := os.WriteFile(filepath.Join(dir, ComposeFile), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, DockerfileName), []byte(dockerfile), 0o644); err != nil {
		return fmt.Errorf("testnet: %w", err)
	}
	return nil
}
