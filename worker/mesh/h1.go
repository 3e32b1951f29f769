package mesh

import (
	"bufio"
	"errors"
	"io"
	"strconv"
	"sync"
)

// The fast HTTP path's wire helpers: reading a message head, recognising
// the headers the proxy acts on, and copying bodies by their framing.
// Anything unusual is reported as such so that the caller hands the
// connection to net/http instead of guessing.

var (
	// errHeadTooLarge: a message head is over maxHeadBytes.
	errHeadTooLarge = errors.New("message head too large")
	// errMalformed: the message cannot be framed safely.
	errMalformed = errors.New("malformed HTTP/1.1 message")
)

// maxHeadBytes bounds a request or response head, as net/http's
// DefaultMaxHeaderBytes does.
const maxHeadBytes = 1 << 20

// field is one header line of a head, as slices of the head's bytes.
type field struct{ name, value []byte }

// readHead reads one message head (start line, header lines, empty line)
// into head, returning the start line and the fields. The slices point
// into head and are valid until it is reused.
func readHead(r *bufio.Reader, head []byte, fields []field) ([]byte, []byte, []field, error) {
	head = head[:0]
	fields = fields[:0]
	// ends[i] is where line i ends in head (before CRLF).
	var endsBuf [32][2]int
	ends := endsBuf[:0]
	for {
		start := len(head)
		for {
			line, err := r.ReadSlice('\n')
			head = append(head, line...)
			if len(head) > maxHeadBytes {
				return head, nil, fields, errHeadTooLarge
			}
			if err == nil {
				break
			}
			if err != bufio.ErrBufferFull {
				if err == io.EOF && len(head) > 0 {
					err = io.ErrUnexpectedEOF
				}
				return head, nil, fields, err
			}
		}
		end := len(head) - 1
		if end > start && head[end-1] == '\r' {
			end--
		}
		if end == start {
			if len(ends) == 0 {
				// net/http tolerates empty lines before a request.
				head = head[:0]
				continue
			}
			break
		}
		ends = append(ends, [2]int{start, end})
	}
	startLine := head[ends[0][0]:ends[0][1]]
	for _, e := range ends[1:] {
		line := head[e[0]:e[1]]
		colon := -1
		for i, c := range line {
			if c == ':' {
				colon = i
				break
			}
			if !isTokenChar(c) {
				// Includes obs-fold (a leading space) and a
				// space before the colon: net/http decides.
				return head, startLine, fields, errMalformed
			}
		}
		if colon <= 0 {
			return head, startLine, fields, errMalformed
		}
		v := line[colon+1:]
		for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
			v = v[1:]
		}
		for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
			v = v[:len(v)-1]
		}
		for _, c := range v {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return head, startLine, fields, errMalformed
			}
		}
		fields = append(fields, field{name: line[:colon], value: v})
	}
	return head, startLine, fields, nil
}

// isTokenChar reports whether c may appear in a token (RFC 9110 5.6.2).
func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// is reports whether the header name b is s, ignoring ASCII case; s is
// lower case.
func is(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// hopByHop reports whether a header is about one connection only, so a
// proxy must not forward it (RFC 9110 7.6.1; net/http's list).
func hopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return is(name, "te")
	case 7:
		return is(name, "upgrade") || is(name, "trailer")
	case 10:
		return is(name, "connection") || is(name, "keep-alive")
	case 16:
		return is(name, "proxy-connection")
	case 17:
		return is(name, "transfer-encoding")
	case 18:
		return is(name, "proxy-authenticate")
	case 19:
		return is(name, "proxy-authorization")
	}
	return false
}

// eachToken calls fn with each comma-separated token of v, trimmed.
func eachToken(v []byte, fn func([]byte)) {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		t := v[:i]
		for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
			t = t[1:]
		}
		for len(t) > 0 && (t[len(t)-1] == ' ' || t[len(t)-1] == '\t') {
			t = t[:len(t)-1]
		}
		if len(t) > 0 {
			fn(t)
		}
		if i == len(v) {
			return
		}
		v = v[i+1:]
	}
}

// framing is how a message's body is delimited.
type framing struct {
	length  int64 // -1: none given
	chunked bool
	lengths int  // Content-Length fields seen
	other   bool // a transfer coding other than a lone chunked
}

func (f *framing) add(fd field) bool {
	switch {
	case is(fd.name, "content-length"):
		n, err := strconv.ParseInt(string(fd.value), 10, 64)
		if err != nil || n < 0 || (f.lengths > 0 && n != f.length) {
			f.other = true
		}
		f.length = n
		f.lengths++
		return true
	case is(fd.name, "transfer-encoding"):
		if f.chunked || !is(fd.value, "chunked") {
			f.other = true
		}
		f.chunked = true
		return true
	}
	return false
}

// copyBuffers are the copy buffers of bodies larger than what is already
// buffered.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// copyN copies n bytes (n < 0: until EOF) from src to dst. Whatever src
// already buffered goes through dst's buffer; dst is flushed whenever src
// has nothing buffered, so a body arriving slowly reaches its reader as it
// comes. srcErr tells whether reading (true) or writing failed.
func copyN(dst *bufio.Writer, src *bufio.Reader, n int64) (err error, srcErr bool) {
	var bp *[]byte
	defer func() {
		if bp != nil {
			copyBuffers.Put(bp)
		}
	}()
	for n != 0 {
		if k := src.Buffered(); k > 0 {
			if n > 0 && int64(k) > n {
				k = int(n)
			}
			b, _ := src.Peek(k)
			if _, err := dst.Write(b); err != nil {
				return err, false
			}
			src.Discard(k)
			n -= int64(k)
			continue
		}
		if err := dst.Flush(); err != nil {
			return err, false
		}
		if bp == nil {
			bp = copyBuffers.Get().(*[]byte)
		}
		buf := *bp
		if n > 0 && int64(len(buf)) > n {
			buf = buf[:n]
		}
		// With an empty buffer and a large p, bufio reads straight
		// from the connection and writes straight to it.
		m, rerr := src.Read(buf)
		if m > 0 {
			if _, err := dst.Write(buf[:m]); err != nil {
				return err, false
			}
			n -= int64(m)
		}
		if rerr != nil {
			if rerr == io.EOF && n < 0 {
				return nil, false
			}
			if rerr == io.EOF {
				rerr = io.ErrUnexpectedEOF
			}
			return rerr, true
		}
	}
	return nil, false
}

// copyChunked decodes a chunked body from src and writes it chunked to dst,
// trailers included.
func copyChunked(dst *bufio.Writer, src *bufio.Reader) (err error, srcErr bool) {
	var scratch [20]byte
	for {
		if src.Buffered() == 0 {
			// Pass on what came so far before waiting for more.
			if err := dst.Flush(); err != nil {
				return err, false
			}
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			if err == io.EOF || err == bufio.ErrBufferFull {
				err = io.ErrUnexpectedEOF
			}
			return err, true
		}
		size, ok := chunkSize(line)
		if !ok {
			return errMalformed, true
		}
		if size == 0 {
			break
		}
		dst.Write(strconv.AppendInt(scratch[:0], size, 16))
		dst.WriteString("\r\n")
		if err, se := copyN(dst, src, size); err != nil {
			return err, se
		}
		crlf, err := src.ReadSlice('\n')
		if err != nil || !(len(crlf) == 2 && crlf[0] == '\r' || len(crlf) == 1) {
			return errMalformed, true
		}
		if _, err := dst.WriteString("\r\n"); err != nil {
			return err, false
		}
	}
	dst.WriteString("0\r\n")
	// Trailer fields, then the empty line; forwarded as they are but
	// checked as header lines.
	total := 0
	for {
		line, err := src.ReadSlice('\n')
		if err != nil {
			return io.ErrUnexpectedEOF, true
		}
		total += len(line)
		if total > maxHeadBytes {
			return errHeadTooLarge, true
		}
		t := line[:len(line)-1]
		if len(t) > 0 && t[len(t)-1] == '\r' {
			t = t[:len(t)-1]
		}
		if len(t) == 0 {
			break
		}
		for _, c := range t {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return errMalformed, true
			}
		}
		dst.Write(t)
		dst.WriteString("\r\n")
	}
	if _, err := dst.WriteString("\r\n"); err != nil {
		return err, false
	}
	return nil, false
}

// chunkSize parses a chunk-size line, ignoring chunk extensions.
func chunkSize(line []byte) (int64, bool) {
	var n int64
	digits := 0
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		case c == ';' || c == '\r' || c == '\n' || c == ' ' || c == '\t':
			return n, digits > 0
		default:
			return 0, false
		}
		if digits == 15 {
			return 0, false
		}
		n = n<<4 | int64(d)
		digits++
	}
	return 0, false
}
