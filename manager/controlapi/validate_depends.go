package controlapi

import (
	"slices"
	"strings"

	"shoal/manager/servicespec"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// validateDependsOn checks what can be checked of depends_on before the
// store is read.
func validateDependsOn(spec *shoalpb.ServiceSpec) error {
	seen := map[string]bool{}
	for _, dep := range spec.GetDependsOn() {
		name := dep.GetService()
		switch {
		case !serviceName.MatchString(name):
			return invalid("depends_on", "%q is not a valid service name", name)
		case name == spec.GetName():
			return invalid("depends_on", "service %s depends on itself; remove that entry", name)
		case seen[name]:
			return invalid("depends_on", "service %s is listed twice; keep one entry", name)
		}
		if _, ok := shoalpb.DependencyCondition_name[int32(dep.GetCondition())]; !ok {
			return invalid("depends_on", "%s: unknown condition %d; use started, healthy or completed", name, dep.GetCondition())
		}
		seen[name] = true
	}
	return nil
}

// validateDependencies checks spec's depends_on against the store: every
// service named exists, a completion is awaited only from a job, and no
// chain of dependencies leads back to spec (its tasks would never start).
func validateDependencies(tx state.ReadTx, spec *shoalpb.ServiceSpec) error {
	specOf := func(name string) *shoalpb.ServiceSpec {
		if name == spec.GetName() {
			return spec
		}
		return tx.ServiceByName(name).GetSpec()
	}
	for _, dep := range spec.GetDependsOn() {
		other := specOf(dep.GetService())
		if other == nil {
			return invalid("depends_on", "service %s does not exist; create it first, or deploy both in one stack", dep.GetService())
		}
		if dep.GetCondition() == shoalpb.DependencyCondition_DEPENDENCY_CONDITION_COMPLETED && !servicespec.IsJob(other.GetMode()) {
			return invalid("depends_on", "%s is a %s service and never completes; wait for it to be started or healthy, or make it a job", dep.GetService(), ModeName(other.GetMode()))
		}
	}
	// Depth-first from spec; path holds the chain being walked.
	var path []string
	done := map[string]bool{}
	var walk func(name string) error
	walk = func(name string) error {
		if i := slices.Index(path, name); i >= 0 {
			return invalid("depends_on", "a dependency cycle: %s → %s; services in a cycle would never start", strings.Join(path[i:], " → "), name)
		}
		if done[name] {
			return nil
		}
		path = append(path, name)
		for _, dep := range specOf(name).GetDependsOn() {
			if err := walk(dep.GetService()); err != nil {
				return err
			}
		}
		path = path[:len(path)-1]
		done[name] = true
		return nil
	}
	return walk(spec.GetName())
}
