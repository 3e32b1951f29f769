package netdns

import (
	"errors"
	"net"
	"net/netip"
	"sync"

	"github.com/miekg/dns"
)

// maxUDPPayload caps the response size a UDP client may ask for with
// EDNS0: bigger answers are truncated (TC) and the client asks over TCP.
const maxUDPPayload = 4096

// packBufs holds response buffers for the UDP path.
var packBufs = sync.Pool{New: func() any { b := make([]byte, maxUDPPayload+512); return &b }}

// udpConn is the part of *net.UDPConn a udpWriter sends with.
type udpConn interface {
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
}

// udpWriter answers one UDP query: it truncates the response to what the
// client can take (512 bytes, or its EDNS0 size) and sends it.
type udpWriter struct {
	conn udpConn
	src  netip.AddrPort
	size int
	// batch, when set, collects the answer for the socket loop's next
	// sendmmsg instead of sending it; addr is src for it.
	batch *batcher
	addr  net.Addr
}

// detach returns a writer that sends by itself, for an answer written
// after the socket loop moved on (a forwarded query).
func (w *udpWriter) detach() dns.ResponseWriter {
	return &udpWriter{conn: w.conn, src: w.src, size: w.size}
}

func (w *udpWriter) remoteAddrPort() netip.AddrPort { return w.src }

func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	m.Truncate(w.size)
	if b := w.batch; b != nil && b.n < len(b.out) {
		packed, err := m.PackBuffer(b.bufs[b.n])
		if err != nil {
			return err
		}
		b.out[b.n].Buffers[0] = packed
		b.out[b.n].Addr = w.addr
		b.n++
		return nil
	}
	bp := packBufs.Get().(*[]byte)
	defer packBufs.Put(bp)
	b, err := m.PackBuffer(*bp)
	if err != nil {
		return err
	}
	_, err = w.conn.WriteToUDPAddrPort(b, w.src)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) {
	return w.conn.WriteToUDPAddrPort(b, w.src)
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.conn.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.src) }
func (w *udpWriter) TsigStatus() error    { return nil }
func (w *udpWriter) TsigTimersOnly(bool)  {}
func (w *udpWriter) Hijack()              {}
func (w *udpWriter) Close() error         { return nil }

// clientUDPSize is the largest UDP response r's sender accepts.
func clientUDPSize(r *dns.Msg) int {
	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
		size = int(opt.UDPSize())
	}
	return min(size, maxUDPPayload)
}

// recorder keeps the response instead of sending it: Lookup's writer.
type recorder struct {
	msg  *dns.Msg
	done chan struct{}
}

var errWritten = errors.New("netdns: response already written")

func (r *recorder) WriteMsg(m *dns.Msg) error {
	if r.msg != nil {
		return errWritten
	}
	r.msg = m.Copy()
	close(r.done)
	return nil
}

func (r *recorder) Write(b []byte) (int, error) {
	m := new(dns.Msg)
	if err := m.Unpack(b); err != nil {
		return 0, err
	}
	return len(b), r.WriteMsg(m)
}

var loopback = netip.AddrPortFrom(netip.IPv6Loopback(), 0)

func (r *recorder) remoteAddrPort() netip.AddrPort { return loopback }
func (r *recorder) LocalAddr() net.Addr            { return net.UDPAddrFromAddrPort(loopback) }
func (r *recorder) RemoteAddr() net.Addr           { return net.UDPAddrFromAddrPort(loopback) }
func (r *recorder) TsigStatus() error              { return nil }
func (r *recorder) TsigTimersOnly(bool)            {}
func (r *recorder) Hijack()                        {}
func (r *recorder) Close() error                   { return nil }
