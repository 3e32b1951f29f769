package manager

import (
	"context"
	"time"

	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// reconcileRoles is the leader loop that carries out demotions: a node whose
// desired role is worker but which is still a Raft voter is removed from the
// Raft configuration (after handing leadership away if it is this node). The
// node then renews its certificate and restarts as a worker. Promotions need
// no leader action: the node renews to a manager certificate and calls
// RaftMembership.Join itself.
func (m *Manager) reconcileRoles(ctx context.Context) error {
	events := m.cfg.Store.Watch(ctx)
	ticker := time.NewTicker(2 * time.Second)
	defer ticker.Stop()
	m.demoteOnce(ctx)
	due := false // an event since the last pass may call for a demotion
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			switch {
			case !ok:
				if ctx.Err() == nil {
					events = m.cfg.Store.Watch(ctx)
				}
				due = true
			case ev.Kind == state.EventReset:
				due = true
			default:
				// Only a node's desired role can call for a demotion.
				// Task and service events, the bulk of a busy cluster's
				// writes, would each cost a read of every node and of
				// the Raft configuration.
				_, isNode := ev.Object.(*shoalpb.Node)
				due = due || isNode
			}
			if !due || len(events) > 0 {
				continue // one pass once the burst is read
			}
		case <-ticker.C:
		}
		due = false
		m.demoteOnce(ctx)
	}
}

func (m *Manager) demoteOnce(ctx context.Context) {
	members, err := m.cfg.Store.Members()
	if err != nil {
		return
	}
	voters := map[string]bool{}
	for _, mem := range members {
		voters[mem.ID] = true
	}
	var demote []string
	m.cfg.Store.View(func(tx state.ReadTx) {
		for _, n := range tx.Nodes() {
			if n.GetSpec().GetDesiredRole() == shoalpb.NodeRole_NODE_ROLE_WORKER && voters[n.Id] {
				demote = append(demote, n.Id)
			}
		}
	})
	for _, id := range demote {
		if id == m.cfg.NodeID {
			m.log.Info("handing leadership away before this manager is demoted")
			if err := m.cfg.Store.TransferLeadership(ctx); err != nil {
				m.log.Warn("leadership transfer failed", "err", err)
			}
			return
		}
		if err := m.cfg.Store.RemoveServer(ctx, id); err != nil {
			m.log.Warn("removing demoted manager from raft failed", "node", id, "err", err)
			continue
		}
		if err := m.updateNode(ctx, id, func(n *shoalpb.Node) { n.Manager = nil }); err != nil {
			m.log.Warn("recording demotion failed", "node", id, "err", err)
		}
		m.log.Info("manager demoted", "node", id)
	}
}
