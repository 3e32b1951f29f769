package network

import (
	"fmt"
	"testing"
	"time"
)

func TestZZTiming(t *testing.T) {
	n := newTestNetwork(t, "10.231.17.0/24")
	var tAttach, tVeth, tNS, tRm time.Duration
	for i := range 50 {
		id := fmt.Sprintf("tm%d", i)
		s := time.Now()
		a := attach(t, n, task(id, fmt.Sprintf("10.231.17.%d/24", 2+i)))
		tAttach += time.Since(s)
		r := n.tasks[id]
		s = time.Now()
		deleteLink(r.Veth)
		tVeth += time.Since(s)
		s = time.Now()
		deleteNamespace(r.NetNS)
		tNS += time.Since(s)
		s = time.Now()
		n.Detach(t.Context(), id)
		tRm += time.Since(s)
		_ = a
	}
	t.Logf("attach %v vethdel %v nsdel %v rest %v", tAttach/50, tVeth/50, tNS/50, tRm/50)
}
