package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"

	"shoal/internal/testutil"
)

// profileDir is the directory named by SHOAL_BENCH_PROFILE, "" if unset.
func profileDir() string { return os.Getenv("SHOAL_BENCH_PROFILE") }

// profileManagers writes the CPU profile of every manager, in 5 s pieces,
// into profileDir until the returned function is called; that function then
// writes their heap profiles. The files are named after the sample, the
// manager and its role. Without profileDir both do nothing.
func profileManagers(b *testing.B, leader *testutil.Node, managers []*testutil.Node, name string) (stop func()) {
	b.Helper()
	dir := profileDir()
	if dir == "" {
		return func() {}
	}
	serving := regexp.MustCompile(`msg="serving profiles" addr=(\S+)`)
	fetch := func(ctx context.Context, url, file string) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			b.Errorf("profile %s: %v", url, err)
			return
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				b.Errorf("profile %s: %v", url, err)
			}
			return
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err == nil && ctx.Err() == nil {
			err = os.WriteFile(filepath.Join(dir, file), data, 0o644)
		}
		if err != nil && ctx.Err() == nil {
			b.Errorf("profile %s: %v", url, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var heaps []func()
	for _, m := range managers {
		found := serving.FindAllStringSubmatch(m.Log(b), -1)
		if found == nil {
			b.Fatalf("%s: SHOAL_BENCH_PROFILE is set but its log does not say where it serves profiles", m.Name)
		}
		base := found[len(found)-1][1] // the current run of the daemon
		prefix := name + "-" + m.Name + "-follower"
		if m == leader {
			prefix = name + "-" + m.Name + "-leader"
		}
		wg.Go(func() {
			for i := 1; ctx.Err() == nil; i++ {
				fetch(ctx, base+"profile?seconds=5", fmt.Sprintf("%s-cpu-%03d.pb.gz", prefix, i))
			}
		})
		heaps = append(heaps, func() { fetch(context.Background(), base+"heap", prefix+"-heap.pb.gz") })
	}
	return func() {
		cancel() // the pieces in progress are lost
		wg.Wait()
		for _, heap := range heaps {
			heap()
		}
	}
}
