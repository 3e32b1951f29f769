package node

import (
	"errors"
	"fmt"
	"net"
	"strconv"
)

// DefaultPort is the cluster (gRPC) port; Raft uses the next one.
const DefaultPort = 2377

// DefaultGossipPort is memberlist's port.
const DefaultGossipPort = 7946

// resolveAddrs turns --advertise-addr and --listen-addr (each "IP" or
// "IP:PORT", possibly empty) into full addresses. Without --advertise-addr the
// address of the first non-loopback interface is used; without --listen-addr
// the node listens on its advertise address, so several nodes can share a
// machine by taking one loopback address each.
func resolveAddrs(advertise, listen string) (adv, lis string, err error) {
	if advertise == "" {
		ip, err := defaultIP()
		if err != nil {
			return "", "", err
		}
		advertise = ip
	}
	adv, err = withPort("--advertise-addr", advertise, DefaultPort)
	if err != nil {
		return "", "", err
	}
	if listen == "" {
		return adv, adv, nil
	}
	_, advPort, _ := net.SplitHostPort(adv)
	port, _ := strconv.Atoi(advPort)
	lis, err = withPort("--listen-addr", listen, port)
	return adv, lis, err
}

func withPort(flag, s string, defaultPort int) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = s, strconv.Itoa(defaultPort)
	}
	if net.ParseIP(host) == nil {
		return "", fmt.Errorf("%s: %q is not an IP address; use IP or IP:PORT, e.g. 127.0.0.2 or 10.0.0.5:2377", flag, s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65534 {
		return "", fmt.Errorf("%s: port %q must be a number from 1 to 65534 (the next port is used by Raft)", flag, port)
	}
	return net.JoinHostPort(host, port), nil
}

func defaultIP() (string, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() && ipn.IP.To4() != nil {
			return ipn.IP.String(), nil
		}
	}
	return "", errors.New("--advertise-addr: no non-loopback IPv4 address found; pass --advertise-addr IP")
}

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// listenTCP binds addr, saying which flag to change when it is taken.
func listenTCP(what, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w; is another shoal node running there? pick another address with --advertise-addr/--listen-addr", what, addr, err)
	}
	return ln, nil
}
