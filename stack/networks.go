package stack

import (
	"maps"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"

	shoalpb "shoal/proto"
)

// networkKeys are the network keys convertNetworks honours; driver is
// checked by hand (overlay and bridge mean what a shoal network is).
var networkKeys = newKeySet("name", "external", "labels", "attachable", "driver", "ipam.config.subnet")

// convertNetworks returns the networks the stack creates: every declared
// one that is not external, except the implicit default network, which is
// created only when a service (one listing no network) uses it.
func convertNetworks(p *types.Project, stack string, used map[string]bool) ([]*shoalpb.NetworkSpec, []string, error) {
	var specs []*shoalpb.NetworkSpec
	var warnings []string
	for _, name := range slices.Sorted(maps.Keys(p.Networks)) {
		n := p.Networks[name]
		ignored := unsupportedKeys(n, networkKeys)
		if n.Driver != "" && n.Driver != "overlay" && n.Driver != "bridge" {
			ignored = append(ignored, "driver")
		}
		if len(n.Ipam.Config) > 1 {
			ignored = append(ignored, "ipam.config (all but the first subnet)")
		}
		slices.Sort(ignored)
		warnings = appendWarning(warnings, "network", name, ignored)
		if bool(n.External) || (name == "default" && !used[name]) {
			continue
		}
		if want := stack + "_" + name; n.Name != want {
			return nil, nil, fieldErr("networks."+name+".name", "%q: a stack's networks are named <stack>_<network> (%s); remove name, or create the network yourself and declare it external: true", n.Name, want)
		}
		spec := &shoalpb.NetworkSpec{Name: n.Name, Attachable: n.Attachable, Labels: withStackLabel(n.Labels, stack)}
		if len(n.Ipam.Config) > 0 && n.Ipam.Config[0] != nil {
			spec.Subnet = n.Ipam.Config[0].Subnet
		}
		specs = append(specs, spec)
	}
	return specs, warnings, nil
}
