package controlapi

import (
	"context"
	"slices"
	"sync"

	shoalpb "shoal/proto"
)

// objectLocks serializes this manager's read-modify-writes of each object:
// concurrent updates of one object queue here, in arrival order, instead of
// racing through Raft, where all but one of them would be logged, replicated
// and then refused with a version conflict. Writes of the same object through
// other managers, or by the leader's own loops, still race; the version check
// and the retries of update cover them.
type objectLocks struct {
	mu    sync.Mutex
	locks map[string]*objectLock
}

type objectLock struct {
	held chan struct{} // holds a token while locked; blocked senders queue in order
	refs int           // holders and waiters; the lock is dropped at zero
}

// lock locks the objects keys (in sorted order, so that two writers of the
// same objects cannot deadlock) and reports whether it had to wait for
// another writer. unlock releases them all.
func (l *objectLocks) lock(ctx context.Context, keys []string) (unlock func(), waited bool, err error) {
	keys = slices.Compact(slices.Sorted(slices.Values(keys)))
	locks := make([]*objectLock, len(keys))
	l.mu.Lock()
	if l.locks == nil {
		l.locks = map[string]*objectLock{}
	}
	for i, k := range keys {
		lk := l.locks[k]
		if lk == nil {
			lk = &objectLock{held: make(chan struct{}, 1)}
			l.locks[k] = lk
		}
		lk.refs++
		locks[i] = lk
	}
	l.mu.Unlock()

	taken := 0
	release := func() {
		for _, lk := range locks[:taken] {
			<-lk.held
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for i, lk := range locks {
			if lk.refs--; lk.refs == 0 {
				delete(l.locks, keys[i])
			}
		}
	}
	for _, lk := range locks {
		select {
		case lk.held <- struct{}{}:
		default:
			waited = true
			select {
			case lk.held <- struct{}{}:
			case <-ctx.Done():
				release()
				return nil, false, ctx.Err()
			}
		}
		taken++
	}
	return release, waited, nil
}

// objectKeys names the objects actions write.
func objectKeys(actions []*shoalpb.StoreAction) []string {
	keys := make([]string, 0, len(actions))
	for _, a := range actions {
		switch t := a.GetTarget().(type) {
		case *shoalpb.StoreAction_Cluster:
			keys = append(keys, "cluster/"+t.Cluster.GetId())
		case *shoalpb.StoreAction_Node:
			keys = append(keys, "node/"+t.Node.GetId())
		case *shoalpb.StoreAction_Service:
			keys = append(keys, "service/"+t.Service.GetId())
		case *shoalpb.StoreAction_Task:
			keys = append(keys, "task/"+t.Task.GetId())
		case *shoalpb.StoreAction_TaskStatus:
			keys = append(keys, "task/"+t.TaskStatus.GetTaskId())
		}
	}
	return keys
}
