package exec

import shoalpb "shoal/proto"

// VolumesInUse maps each named volume mounted by a task this node knows (and
// has not forgotten) to those tasks' IDs, so that `volume rm` can refuse to
// remove a volume in use.
func (e *Executor) VolumesInUse() map[string][]string {
	used := map[string][]string{}
	for _, id := range e.taskIDs() {
		t, ok := e.task(id)
		if !ok {
			continue
		}
		for _, m := range t.GetSpec().GetContainer().GetMounts() {
			if m.GetType() == shoalpb.MountType_MOUNT_TYPE_VOLUME {
				used[m.GetSource()] = append(used[m.GetSource()], id)
			}
		}
	}
	return used
}
