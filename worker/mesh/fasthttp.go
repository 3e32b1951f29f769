package mesh

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The fast HTTP path: the port's own HTTP/1.1 server for the common case,
// forwarding each request over a backend's pool of keep-alive connections
// with one parse of each head and no per-request goroutine. A request it
// does not handle (another HTTP version, Upgrade, Expect, absolute or
// asterisk targets, CONNECT, unusual framing or header syntax) hands the
// whole connection, bytes already read included, to net/http and
// httputil.ReverseProxy (http.go), which serve it from then on.

const (
	// httpIdleTimeout: a client connection waiting for its next request.
	httpIdleTimeout = 2 * time.Minute
	// httpHeadTimeout: a request head once its first byte arrived.
	httpHeadTimeout = 30 * time.Second
)

// clientConn is one client connection served by the fast path. It is the
// io.Closer registered with a backend while a request is in flight, so a
// drain deadline closes both the client and the backend connection.
type clientConn struct {
	p      *port
	c      *net.TCPConn
	br     *bufio.Reader
	bw     *bufio.Writer
	client []byte // the client's IP, as X-Forwarded-For adds it

	head   []byte
	fields []field

	idle atomic.Bool // waiting for a request: retire may close it

	mu     sync.Mutex
	up     *upConn
	closed bool
}

func (cc *clientConn) Close() error {
	cc.mu.Lock()
	cc.closed = true
	up := cc.up
	cc.mu.Unlock()
	cc.c.Close()
	if up != nil {
		up.c.Close()
	}
	return nil
}

// setUp records the backend connection in use, or reports false if the
// client connection was closed meanwhile.
func (cc *clientConn) setUp(up *upConn) bool {
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.closed {
		return false
	}
	cc.up = up
	return true
}

// handleHTTP serves one client connection until it closes, asks to, or is
// handed to net/http.
func (p *port) handleHTTP(c *net.TCPConn) {
	defer p.wg.Done()
	cc := &clientConn{p: p, c: c, br: bufio.NewReaderSize(c, 4096), bw: bufio.NewWriterSize(c, 4096)}
	if host, _, err := net.SplitHostPort(c.RemoteAddr().String()); err == nil {
		cc.client = []byte(host)
	}
	if !p.track(cc) {
		c.Close()
		return
	}
	handedOff := cc.serve()
	p.untrack(cc)
	if !handedOff {
		cc.Close()
	}
}

// serve runs the request loop; true means the connection went to net/http.
func (cc *clientConn) serve() bool {
	for {
		cc.idle.Store(true)
		if cc.p.shutting.Load() {
			return false
		}
		cc.c.SetReadDeadline(time.Now().Add(httpIdleTimeout))
		if _, err := cc.br.Peek(1); err != nil {
			return false
		}
		cc.idle.Store(false)
		// Deadlines cost a timer update each: the head's own is set
		// only if the head is not all here yet.
		if buf, _ := cc.br.Peek(cc.br.Buffered()); bytes.Index(buf, []byte("\r\n\r\n")) < 0 {
			cc.c.SetReadDeadline(time.Now().Add(httpHeadTimeout))
		}
		var start []byte
		var err error
		cc.head, start, cc.fields, err = readHead(cc.br, cc.head, cc.fields)
		switch {
		case errors.Is(err, errHeadTooLarge):
			cc.simpleError(431, "request header fields too large", true)
			return false
		case errors.Is(err, errMalformed):
			return cc.handoff()
		case err != nil:
			return false
		}
		req, ok := parseRequest(start, cc.fields)
		if !ok {
			return cc.handoff()
		}
		if req.frame.chunked || req.frame.length > 0 {
			// A body may take its time, as with net/http.
			cc.c.SetReadDeadline(time.Time{})
		}
		if !cc.forward(&req) {
			return false
		}
	}
}

// request is what the fast path needs of a request head.
type request struct {
	method, target []byte
	host           []byte
	frame          framing
	closeAfter     bool
	te             bool // TE: trailers
	idempotent     bool
}

// parseRequest accepts an HTTP/1.1 request in origin form with one Host
// and plain framing; anything else is net/http's.
func parseRequest(start []byte, fields []field) (request, bool) {
	r := request{frame: framing{length: -1}}
	sp1 := bytes.IndexByte(start, ' ')
	if sp1 <= 0 {
		return r, false
	}
	rest := start[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return r, false
	}
	r.method, r.target = start[:sp1], rest[:sp2]
	for _, c := range r.method {
		if !isTokenChar(c) {
			return r, false
		}
	}
	if r.target[0] != '/' || string(r.method) == "CONNECT" {
		return r, false
	}
	for _, c := range r.target {
		if c <= ' ' || c == 0x7f {
			return r, false
		}
	}
	switch string(r.method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		r.idempotent = true
	}
	hosts := 0
	for _, f := range fields {
		switch {
		case r.frame.add(f):
		case is(f.name, "host"):
			hosts++
			r.host = f.value
		case is(f.name, "connection"):
			bad := false
			eachToken(f.value, func(t []byte) {
				switch {
				case is(t, "close"):
					r.closeAfter = true
				case is(t, "upgrade"):
					bad = true
				}
			})
			if bad {
				return r, false
			}
		case is(f.name, "upgrade"), is(f.name, "expect"):
			return r, false
		case is(f.name, "te"):
			r.te = is(f.value, "trailers")
		}
	}
	if hosts != 1 || r.frame.other || (r.frame.chunked && r.frame.lengths > 0) {
		return r, false
	}
	return r, true
}

// handoff gives the connection, and what was read of it, to net/http.
func (cc *clientConn) handoff() bool {
	cc.c.SetReadDeadline(time.Time{})
	replay := append([]byte(nil), cc.head...)
	rc := &replayConn{TCPConn: cc.c, r: io.MultiReader(bytes.NewReader(replay), cc.br)}
	return cc.p.fallback.handoff(rc)
}

// replayConn is a client connection whose first bytes were already read.
type replayConn struct {
	*net.TCPConn
	r io.Reader
}

func (c *replayConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// forward sends one request to a backend and its response back; false
// means the client connection must close.
func (cc *clientConn) forward(req *request) bool {
	p := cc.p
	cfg := p.cur.Load()
	hasBody := req.frame.chunked || req.frame.length > 0
	var triedBuf [4]*backend
	tried := triedBuf[:0]
	var lastErr error
	for {
		b := pick(cfg.backends, tried)
		if b == nil {
			if next := p.cur.Load(); next != cfg {
				cfg = next
				continue
			}
			if lastErr == nil {
				return cc.simpleError(503, "shoal: service "+strconv.Quote(cfg.service)+" has no ready task for port "+strconv.Itoa(int(p.published)), hasBody)
			}
			return cc.simpleError(502, "shoal: service "+strconv.Quote(cfg.service)+": no task answered for port "+strconv.Itoa(int(p.published)), hasBody)
		}
		tried = append(tried, b)
		if !b.acquire(cc) {
			continue
		}
		keep, err := cc.exchange(b, req, hasBody)
		b.release(cc)
		var de *dialError
		if err == nil || !errors.As(err, &de) {
			return keep
		}
		if p.ctx.Err() != nil {
			return false
		}
		b.suspect(p.m.cfg.SuspectFor)
		p.log.Warn("backend unreachable; trying another", "task", b.id, "addr", b.host, "err", err)
		lastErr = err
		if hasBody {
			return cc.simpleError(502, "shoal: service "+strconv.Quote(cfg.service)+": no task answered for port "+strconv.Itoa(int(p.published)), true)
		}
	}
}

// exchange runs the request on a connection of b. A *dialError means
// nothing was sent and no answer written: the caller may try another
// backend.
func (cc *clientConn) exchange(b *backend, req *request, hasBody bool) (bool, error) {
	uc := b.pool.get()
	for attempt := 0; ; attempt++ {
		if uc == nil {
			var err error
			if uc, err = b.dialUp(cc.p.ctx); err != nil {
				return false, err
			}
		}
		if !cc.setUp(uc) {
			uc.c.Close()
			return false, nil
		}
		keep, sent, err := cc.roundTrip(b, uc, req)
		cc.setUp(nil)
		if err == nil {
			return keep, nil
		}
		uc.c.Close()
		// A kept-alive connection the task had closed fails before any
		// answer: resend once on a new one if that is safe.
		if sent && uc.used && attempt == 0 && req.idempotent && !hasBody {
			uc = nil
			continue
		}
		if sent {
			cc.p.log.Warn("request failed", "method", string(req.method), "task", b.id, "err", err)
			return cc.simpleError(502, "shoal: service "+strconv.Quote(cc.p.service())+": no task answered for port "+strconv.Itoa(int(cc.p.published)), hasBody), nil
		}
		return false, nil
	}
}

// roundTrip writes the request and copies the response. sent with an error
// means no byte of the response was read or written yet; otherwise an
// error left the client connection unusable.
func (cc *clientConn) roundTrip(b *backend, uc *upConn, req *request) (keep, sent bool, err error) {
	w := uc.bw
	w.Write(req.method)
	w.WriteByte(' ')
	w.Write(req.target)
	w.WriteString(" HTTP/1.1\r\n")
	var xff [][]byte
	named := namesHeaders(cc.fields)
	for _, f := range cc.fields {
		switch {
		case hopByHop(f.name):
			if req.te && is(f.name, "te") {
				w.WriteString("TE: trailers\r\n")
			}
			continue
		case is(f.name, "x-forwarded-for"):
			xff = append(xff, f.value)
			continue
		case is(f.name, "x-forwarded-host"), is(f.name, "x-forwarded-proto"), is(f.name, "forwarded"):
			continue
		case named && connectionNames(cc.fields, f.name):
			continue
		}
		w.Write(f.name)
		w.WriteString(": ")
		w.Write(f.value)
		w.WriteString("\r\n")
	}
	w.WriteString("X-Forwarded-For: ")
	for _, v := range xff {
		w.Write(v)
		w.WriteString(", ")
	}
	w.Write(cc.client)
	w.WriteString("\r\nX-Forwarded-Host: ")
	w.Write(req.host)
	w.WriteString("\r\nX-Forwarded-Proto: http\r\n")
	if req.frame.chunked {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	w.WriteString("\r\n")
	// A body already read whole goes out with the head, in one write.
	var berr error
	bodySrc := false
	switch {
	case req.frame.chunked:
		berr, bodySrc = copyChunked(w, cc.br)
	case req.frame.length > 0:
		berr, bodySrc = copyN(w, cc.br, req.frame.length)
	}
	if berr == nil {
		berr = w.Flush()
	}
	if berr != nil {
		if bodySrc {
			// The client's body was cut or malformed: nothing to answer.
			return false, false, berr
		}
		// The task may have answered early and closed (413, say): try
		// to read that answer; a request with no body may be resent.
		if req.frame.chunked || req.frame.length > 0 {
			return cc.response(uc, req, false)
		}
		return false, true, berr
	}
	return cc.response(uc, req, true)
}

// namesHeaders reports whether a Connection header of fields lists
// anything but close and keep-alive.
func namesHeaders(fields []field) bool {
	named := false
	for _, f := range fields {
		if len(f.name) == 10 && is(f.name, "connection") {
			eachToken(f.value, func(t []byte) {
				if !is(t, "close") && !is(t, "keep-alive") {
					named = true
				}
			})
		}
	}
	return named
}

// connectionNames reports whether name is listed in a Connection header of
// fields (a hop-by-hop header the sender named).
func connectionNames(fields []field, name []byte) bool {
	found := false
	for _, f := range fields {
		if is(f.name, "connection") {
			eachToken(f.value, func(t []byte) {
				if len(t) == len(name) && bytes.EqualFold(t, name) {
					found = true
				}
			})
		}
	}
	return found
}

// response reads the task's answer on uc and writes it to the client.
func (cc *clientConn) response(uc *upConn, req *request, bodyDone bool) (keep, sent bool, err error) {
	var head, start []byte
	var fields []field
	for {
		uc.head, start, uc.fields, err = readHead(uc.br, uc.head, uc.fields)
		head, fields = uc.head, uc.fields
		if err != nil {
			if len(head) == 0 {
				return false, true, err
			}
			return false, false, cc.badGateway(err)
		}
		if len(start) < 12 || !bytes.HasPrefix(start, []byte("HTTP/1.")) || start[8] != ' ' {
			return false, false, cc.badGateway(errMalformed)
		}
		code, cerr := strconv.Atoi(string(start[9:12]))
		if cerr != nil || code < 100 || (len(start) > 12 && start[12] != ' ') {
			return false, false, cc.badGateway(errMalformed)
		}
		if code == 101 {
			return false, false, cc.badGateway(errMalformed)
		}
		if code >= 200 {
			return cc.finalResponse(uc, req, start, fields, code, bodyDone)
		}
		// 1xx (103 Early Hints and the like): pass it on, then read on.
		cc.writeHead(start, fields, false, -1)
		if err := cc.bw.Flush(); err != nil {
			return false, false, err
		}
	}
}

func (cc *clientConn) finalResponse(uc *upConn, req *request, start []byte, fields []field, code int, bodyDone bool) (keep, sent bool, err error) {
	fr := framing{length: -1}
	upKeep := start[7] == '1'
	for _, f := range fields {
		if fr.add(f) {
			continue
		}
		if is(f.name, "connection") {
			eachToken(f.value, func(t []byte) {
				if is(t, "close") {
					upKeep = false
				}
			})
		}
	}
	if fr.other || (fr.chunked && fr.lengths > 0) {
		return false, false, cc.badGateway(errMalformed)
	}
	noBody := string(req.method) == "HEAD" || code == 204 || code == 304
	// Without a length the body runs to the task's close: the client
	// then learns its end by our close too.
	toEOF := !noBody && !fr.chunked && fr.length < 0
	keep = bodyDone && !req.closeAfter && !toEOF && !cc.p.shutting.Load()
	chunkedOut := fr.chunked && !noBody
	framingOut := 0
	if chunkedOut {
		framingOut = 1
	}
	cc.writeHead(start, fields, !keep, framingOut)
	var cerr error
	var srcErr bool
	switch {
	case noBody:
	case fr.chunked:
		cerr, srcErr = copyChunked(cc.bw, uc.br)
	case fr.length > 0:
		cerr, srcErr = copyN(cc.bw, uc.br, fr.length)
	case toEOF:
		cerr, srcErr = copyN(cc.bw, uc.br, -1)
		upKeep = false
	}
	if cerr == nil {
		cerr = cc.bw.Flush()
	}
	if cerr != nil {
		if srcErr {
			cc.p.log.Warn("response cut by the task", "err", cerr)
		}
		return false, false, cerr
	}
	// Unregister the connection before pooling it: a drain deadline
	// closing this client must not close it under its next user.
	if upKeep && bodyDone && uc.br.Buffered() == 0 && cc.setUp(nil) {
		uc.b.pool.put(uc)
	} else {
		uc.c.Close()
	}
	return keep, false, nil
}

// writeHead writes a response head to the client: HTTP/1.1, the task's
// status and end-to-end headers, and our own framing (chunked 1: the body
// is re-chunked; -1: an interim response).
func (cc *clientConn) writeHead(start []byte, fields []field, closeConn bool, chunked int) {
	w := cc.bw
	w.WriteString("HTTP/1.1")
	w.Write(start[8:])
	w.WriteString("\r\n")
	named := namesHeaders(fields)
	for _, f := range fields {
		if hopByHop(f.name) || (named && connectionNames(fields, f.name)) {
			continue
		}
		if chunked == 1 && is(f.name, "content-length") {
			continue
		}
		w.Write(f.name)
		w.WriteString(": ")
		w.Write(f.value)
		w.WriteString("\r\n")
	}
	if chunked == 1 {
		w.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if closeConn {
		w.WriteString("Connection: close\r\n")
	}
	w.WriteString("\r\n")
}

// badGateway answers 502 for a task's answer that could not be read; the
// client connection closes after it.
func (cc *clientConn) badGateway(err error) error {
	cc.p.log.Warn("bad answer from task", "err", err)
	cc.simpleError(502, "shoal: service "+strconv.Quote(cc.p.service())+": bad answer from a task for port "+strconv.Itoa(int(cc.p.published)), true)
	return err
}

// simpleError answers the current request with a short text and reports
// whether the connection may serve another (closeConn false).
func (cc *clientConn) simpleError(code int, msg string, closeConn bool) bool {
	w := cc.bw
	w.WriteString("HTTP/1.1 ")
	w.WriteString(strconv.Itoa(code))
	w.WriteByte(' ')
	w.WriteString(statusText(code))
	w.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nContent-Length: ")
	w.WriteString(strconv.Itoa(len(msg) + 1))
	if closeConn || cc.p.shutting.Load() {
		closeConn = true
		w.WriteString("\r\nConnection: close")
	}
	w.WriteString("\r\n\r\n")
	w.WriteString(msg)
	w.WriteString("\n")
	return w.Flush() == nil && !closeConn
}

func statusText(code int) string {
	switch code {
	case 431:
		return "Request Header Fields Too Large"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}
