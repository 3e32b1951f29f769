package network

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"

	shoalpb "shoal/proto"
)

// hostResolvConf is read for the nameservers of tasks when Config.DNS is
// empty.
var hostResolvConf = "/etc/resolv.conf"

// writeFiles writes the task's hosts and resolv.conf, which the runtime
// bind-mounts into the container.
// hosts lists every address of the task under its hostname; with
// ClusterDNS the nameserver is the primary network's gateway.
func (n *Network) writeFiles(t *shoalpb.Task, r *taskRecord, gateway net.IP) error {
	dir := n.taskDir(r.TaskID)
	hostname := t.GetSpec().GetContainer().GetHostname()
	if hostname == "" {
		hostname = r.TaskID
		if len(hostname) > 12 {
			hostname = hostname[:12]
		}
	}
	var hosts bytes.Buffer
	hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, l := range r.Links {
		ip, _, _ := net.ParseCIDR(l.Address)
		fmt.Fprintf(&hosts, "%s\t%s\n", ip, hostname)
	}
	if err := os.WriteFile(filepath.Join(dir, "hosts"), hosts.Bytes(), 0o644); err != nil {
		return err
	}
	var resolv bytes.Buffer
	if n.clusterDNS {
		fmt.Fprintf(&resolv, "nameserver %s\noptions ndots:0\n", gateway)
		return os.WriteFile(filepath.Join(dir, "resolv.conf"), resolv.Bytes(), 0o644)
	}
	servers := n.dns
	if len(servers) == 0 {
		servers = hostNameservers()
	}
	if len(servers) == 0 {
		resolv.WriteString("# shoal: the host has no nameserver a task can reach\n")
	}
	for _, s := range servers {
		fmt.Fprintf(&resolv, "nameserver %s\n", s)
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), resolv.Bytes(), 0o644)
}

// hostNameservers returns the host's IPv4 and IPv6 nameservers, skipping
// loopback ones (systemd-resolved's 127.0.0.53, a local dnsmasq), which a
// task's namespace cannot reach.
func hostNameservers() []string {
	f, err := os.Open(hostResolvConf)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		ip := net.ParseIP(fields[1])
		if ip == nil || ip.IsLoopback() {
			continue
		}
		out = append(out, ip.String())
	}
	return out
}
