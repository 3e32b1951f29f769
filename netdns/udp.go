package netdns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is how many datagrams one recvmmsg reads and one sendmmsg
// sends. Under load a socket loop answers a whole batch per pair of system
// calls instead of two calls per query; idle, recvmmsg returns the first
// datagram at once, so batching adds no latency.
const udpBatch = 32

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// batcher collects the inline answers of one read batch for one sendmmsg.
type batcher struct {
	out  []ipv4.Message
	bufs [][]byte
	n    int
}

func newBatcher() *batcher {
	b := &batcher{out: make([]ipv4.Message, udpBatch), bufs: make([][]byte, udpBatch)}
	for i := range b.out {
		b.bufs[i] = make([]byte, maxUDPPayload+512)
		b.out[i].Buffers = make([][]byte, 1)
	}
	return b
}

// serveUDP is one socket's loop. Cluster names are answered inline (no
// goroutine per query); forwarded queries get their own goroutine.
func (s *Server) serveUDP(ctx context.Context, c *net.UDPConn) {
	var bc batchConn = ipv4.NewPacketConn(c)
	if ap, err := netip.ParseAddrPort(c.LocalAddr().String()); err == nil && !ap.Addr().Unmap().Is4() {
		bc = ipv6.NewPacketConn(c)
	}
	in := make([]ipv4.Message, udpBatch)
	for i := range in {
		// A query bigger than maxUDPPayload arrives cut (MSG_TRUNC) and is
		// refused with FORMERR.
		in[i].Buffers = [][]byte{make([]byte, maxUDPPayload)}
	}
	batch := newBatcher()
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("dns udp read", "err", err)
			continue
		}
		batch.n = 0
		for i := range in[:n] {
			m := &in[i]
			ua, ok := m.Addr.(*net.UDPAddr)
			if !ok {
				continue
			}
			w := &udpWriter{conn: c, src: ua.AddrPort(), addr: ua, batch: batch}
			pkt := m.Buffers[0][:m.N]
			if m.Flags&syscall.MSG_TRUNC != 0 {
				w.size = 512
				if len(pkt) >= 12 {
					s.refuseOversized(w, pkt)
				}
				continue
			}
			s.servePacket(ctx, w, pkt)
		}
		if err := batch.flush(bc); err != nil && ctx.Err() == nil {
			s.log.Debug("dns udp write", "err", err)
		}
	}
}

// flush sends the batch's answers; a datagram the kernel refuses is
// dropped (the client asks again), the rest still go.
func (b *batcher) flush(bc batchConn) error {
	var errs error
	for sent := 0; sent < b.n; {
		k, err := bc.WriteBatch(b.out[sent:b.n], 0)
		if err != nil {
			errs = errors.Join(errs, err)
			k = max(k, 1)
		}
		sent += k
	}
	b.n = 0
	return errs
}

// refuseOversized answers FORMERR to a query longer than the server
// reads.
func (s *Server) refuseOversized(w *udpWriter, pkt []byte) {
	h := headerOf(pkt)
	if accept(h) == dns.MsgIgnore {
		return
	}
	_ = w.WriteMsg(headerReply(h, dns.RcodeFormatError))
}
