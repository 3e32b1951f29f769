package containerd

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkStart measures Start (create the container and its task, start
// it) of one container at a time, and of 20 containers with 4 in parallel
// (reported as ms/20-containers).
func BenchmarkStart(b *testing.B) {
	r := newRuntime(b, Config{})
	loadApp(b, r)
	ctx := context.Background()
	remove := func(ids []string) {
		for _, id := range ids {
			if err := r.Remove(ctx, id); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("one", func(b *testing.B) {
		var ids []string
		for i := 0; b.Loop(); i++ {
			id := fmt.Sprintf("one-%d", i)
			task := newTask(id, "sleep")
			if _, err := r.Start(ctx, task); err != nil {
				b.Fatal(err)
			}
			ids = append(ids, id)
		}
		b.StopTimer()
		remove(ids)
	})
	b.Run("20-by-4", func(b *testing.B) {
		var total time.Duration
		n := 0
		for i := 0; b.Loop(); i++ {
			ids := make(chan string, 20)
			for j := 0; j < 20; j++ {
				ids <- fmt.Sprintf("par-%d-%d", i, j)
			}
			close(ids)
			var started []string
			var mu sync.Mutex
			var wg sync.WaitGroup
			begin := time.Now()
			for w := 0; w < 4; w++ {
				wg.Go(func() {
					for id := range ids {
						if _, err := r.Start(ctx, newTask(id, "sleep")); err != nil {
							b.Error(err)
							return
						}
						mu.Lock()
						started = append(started, id)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			total += time.Since(begin)
			n++
			b.StopTimer()
			remove(started)
			b.StartTimer()
		}
		b.ReportMetric(float64(total.Milliseconds())/float64(n), "ms/20-containers")
	})
}
