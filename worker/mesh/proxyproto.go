package mesh

import (
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
)

// proxyV2Signature opens every PROXY protocol version 2 header.
var proxyV2Signature = [12]byte{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A}

// proxyHeader is the PROXY protocol header telling a task who the client
// (src) was and which address it connected to (dst). Addresses that are
// not both TCP over the same family (after unmapping IPv4-in-IPv6) give
// the protocol's "unknown" form (v1 UNKNOWN, v2 LOCAL): the task then uses
// the connection's own addresses.
func proxyHeader(v ProxyProtocol, src, dst net.Addr) []byte {
	s, d, ok := proxyAddrs(src, dst)
	if v == ProxyV1 {
		return proxyV1(s, d, ok)
	}
	return proxyV2(s, d, ok)
}

func proxyAddrs(src, dst net.Addr) (s, d netip.AddrPort, ok bool) {
	st, ok1 := src.(*net.TCPAddr)
	dt, ok2 := dst.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return s, d, false
	}
	s, d = st.AddrPort(), dt.AddrPort()
	s = netip.AddrPortFrom(s.Addr().Unmap(), s.Port())
	d = netip.AddrPortFrom(d.Addr().Unmap(), d.Port())
	if s.Addr().Is4() != d.Addr().Is4() {
		// A v4 client on a v6 address (or the reverse) cannot happen
		// on one socket once unmapped; map both to v6 to stay exact.
		s = netip.AddrPortFrom(netip.AddrFrom16(s.Addr().As16()), s.Port())
		d = netip.AddrPortFrom(netip.AddrFrom16(d.Addr().As16()), d.Port())
	}
	return s, d, s.IsValid() && d.IsValid()
}

func proxyV1(s, d netip.AddrPort, ok bool) []byte {
	if !ok {
		return []byte("PROXY UNKNOWN\r\n")
	}
	fam := "TCP4"
	if !s.Addr().Is4() {
		fam = "TCP6"
	}
	b := make([]byte, 0, 108) // the protocol's maximum v1 header length
	b = append(b, "PROXY "...)
	b = append(b, fam...)
	b = append(b, ' ')
	b = s.Addr().AppendTo(b)
	b = append(b, ' ')
	b = d.Addr().AppendTo(b)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(s.Port()), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, uint64(d.Port()), 10)
	return append(b, "\r\n"...)
}

func proxyV2(s, d netip.AddrPort, ok bool) []byte {
	b := make([]byte, 16, 16+36)
	copy(b, proxyV2Signature[:])
	if !ok {
		b[12] = 0x20 // version 2, LOCAL
		b[13] = 0x00 // AF_UNSPEC
		return b     // length 0
	}
	b[12] = 0x21 // version 2, PROXY
	if s.Addr().Is4() {
		b[13] = 0x11 // AF_INET, STREAM
		binary.BigEndian.PutUint16(b[14:], 12)
		sa, da := s.Addr().As4(), d.Addr().As4()
		b = append(b, sa[:]...)
		b = append(b, da[:]...)
	} else {
		b[13] = 0x21 // AF_INET6, STREAM
		binary.BigEndian.PutUint16(b[14:], 36)
		sa, da := s.Addr().As16(), d.Addr().As16()
		b = append(b, sa[:]...)
		b = append(b, da[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, s.Port())
	return binary.BigEndian.AppendUint16(b, d.Port())
}
