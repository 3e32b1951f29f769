package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"shoal/manager/servicespec"
	shoalpb "shoal/proto"
)

// updateFlags are the list-editing flags of `service update`.
type updateFlags struct {
	image                          string
	args                           string
	force                          bool
	envAdd, envRm, envFile         []string
	labelAdd, labelRm              []string
	containerLabelAdd, containerRm []string
	constraintAdd, constraintRm    []string
	prefAdd, prefRm                []string
	mountAdd, mountRm              []string
	publishAdd, publishRm          []string
	networkAdd, networkRm          []string
}

func (u *updateFlags) register(cmd *cobra.Command) {
	fs := cmd.Flags()
	fs.StringVar(&u.image, "image", "", "new image")
	fs.StringVar(&u.args, "args", "", "new command arguments (space separated)")
	fs.BoolVar(&u.force, "force", false, "replace every task even if nothing changed")
	fs.StringArrayVar(&u.envAdd, "env-add", nil, "add or change an environment variable KEY=VALUE")
	fs.StringArrayVar(&u.envRm, "env-rm", nil, "remove an environment variable KEY")
	fs.StringArrayVar(&u.envFile, "env-file", nil, "add or change the environment variables of a file of KEY=VALUE lines (before --env-add)")
	fs.StringArrayVar(&u.labelAdd, "label-add", nil, "add or change a service label KEY=VALUE")
	fs.StringArrayVar(&u.labelRm, "label-rm", nil, "remove a service label")
	fs.StringArrayVar(&u.containerLabelAdd, "container-label-add", nil, "add or change a task label KEY=VALUE")
	fs.StringArrayVar(&u.containerRm, "container-label-rm", nil, "remove a task label")
	fs.StringArrayVar(&u.constraintAdd, "constraint-add", nil, "add a placement constraint")
	fs.StringArrayVar(&u.constraintRm, "constraint-rm", nil, "remove a placement constraint")
	fs.StringArrayVar(&u.prefAdd, "placement-pref-add", nil, "add a placement preference spread=node.labels.KEY")
	fs.StringArrayVar(&u.prefRm, "placement-pref-rm", nil, "remove a placement preference")
	fs.StringArrayVar(&u.mountAdd, "mount-add", nil, "add a mount (as --mount)")
	fs.StringArrayVar(&u.mountRm, "mount-rm", nil, "remove the mount at a target path")
	fs.StringArrayVar(&u.publishAdd, "publish-add", nil, "publish a port (as --publish)")
	fs.StringArrayVar(&u.publishRm, "publish-rm", nil, "unpublish a port: PUBLISHED[/PROTOCOL] or the target port")
	fs.StringArrayVar(&u.networkAdd, "network-add", nil, "join a network (as --network); an existing entry for it is replaced")
	fs.StringArrayVar(&u.networkRm, "network-rm", nil, "leave a network: its name or ID")
}

// resolveNetworks replaces the names in --network-rm by the networks' IDs,
// which is what a stored spec holds.
func (u *updateFlags) resolveNetworks(ctx context.Context, c *client) error {
	for i, ref := range u.networkRm {
		n, err := c.control().GetNetwork(ctx, &shoalpb.GetNetworkRequest{Network: ref})
		if err != nil {
			return fmt.Errorf("--network-rm %s: %w", ref, c.explain(err))
		}
		u.networkRm[i] = n.GetNetwork().GetId()
	}
	return nil
}

// apply edits spec; it fails on a removal of something that is not there.
func (u *updateFlags) apply(spec *shoalpb.ServiceSpec, changed func(string) bool) error {
	t, c := spec.Task, spec.Task.Container
	if changed("image") {
		c.Image = u.image
	}
	if changed("args") {
		c.Args = strings.Fields(u.args)
	}
	if u.force {
		t.ForceUpdate++
	}
	for _, k := range u.envRm {
		i := slices.IndexFunc(c.Env, func(e string) bool { name, _, _ := strings.Cut(e, "="); return name == k })
		if i < 0 {
			return fmt.Errorf("--env-rm %s: the service has no such variable", k)
		}
		c.Env = slices.Delete(c.Env, i, i+1)
	}
	var adds []string
	for _, file := range u.envFile {
		env, err := readEnvFile(file)
		if err != nil {
			return err
		}
		adds = append(adds, env...)
	}
	for _, e := range append(adds, u.envAdd...) {
		k, _, err := kv("--env-add", e)
		if err != nil {
			return err
		}
		if !strings.Contains(e, "=") {
			e += "=" + os.Getenv(e)
		}
		c.Env = slices.DeleteFunc(c.Env, func(old string) bool { name, _, _ := strings.Cut(old, "="); return name == k })
		c.Env = append(c.Env, e)
	}
	var err error
	if spec.Labels, err = editLabels("--label", spec.Labels, u.labelAdd, u.labelRm); err != nil {
		return err
	}
	if c.Labels, err = editLabels("--container-label", c.Labels, u.containerLabelAdd, u.containerRm); err != nil {
		return err
	}
	for _, rm := range u.constraintRm {
		i := slices.Index(t.Placement.Constraints, rm)
		if i < 0 {
			return fmt.Errorf("--constraint-rm %q: the service has no such constraint (it has %q)", rm, t.Placement.Constraints)
		}
		t.Placement.Constraints = slices.Delete(t.Placement.Constraints, i, i+1)
	}
	t.Placement.Constraints = append(t.Placement.Constraints, u.constraintAdd...)
	for _, rm := range u.prefRm {
		pref, err := parsePlacementPref(rm)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(t.Placement.Preferences, func(p *shoalpb.PlacementPreference) bool { return p.Spread == pref.Spread })
		if i < 0 {
			return fmt.Errorf("--placement-pref-rm %q: the service has no such preference", rm)
		}
		t.Placement.Preferences = slices.Delete(t.Placement.Preferences, i, i+1)
	}
	for _, add := range u.prefAdd {
		pref, err := parsePlacementPref(add)
		if err != nil {
			return err
		}
		t.Placement.Preferences = append(t.Placement.Preferences, pref)
	}
	for _, target := range u.mountRm {
		i := slices.IndexFunc(c.Mounts, func(m *shoalpb.Mount) bool { return m.Target == target })
		if i < 0 {
			return fmt.Errorf("--mount-rm %s: the service has no mount at that target", target)
		}
		c.Mounts = slices.Delete(c.Mounts, i, i+1)
	}
	for _, add := range u.mountAdd {
		m, err := parseMount(add)
		if err != nil {
			return err
		}
		c.Mounts = append(slices.DeleteFunc(c.Mounts, func(old *shoalpb.Mount) bool { return old.Target == m.Target }), m)
	}
	for _, rm := range u.publishRm {
		port, proto, _ := strings.Cut(rm, "/")
		if proto == "" {
			proto = "tcp"
		}
		i := slices.IndexFunc(t.Ports, func(p *shoalpb.PortConfig) bool {
			return p.Protocol == proto && (fmt.Sprint(p.PublishedPort) == port || (p.PublishedPort == 0 && fmt.Sprint(p.TargetPort) == port))
		})
		if i < 0 {
			return fmt.Errorf("--publish-rm %s: the service publishes no such port", rm)
		}
		t.Ports = slices.Delete(t.Ports, i, i+1)
	}
	for _, add := range u.publishAdd {
		p, err := parsePublish(add)
		if err != nil {
			return err
		}
		t.Ports = append(t.Ports, p)
	}
	return u.editNetworks(t)
}

// editNetworks applies --network-rm (network IDs by now) and --network-add.
// A service on no listed network is on the default one: an added network
// comes beside it, and a service whose last network is removed goes back
// to it.
func (u *updateFlags) editNetworks(t *shoalpb.TaskSpec) error {
	if len(t.Networks) == 0 && len(u.networkAdd) > 0 {
		t.Networks = []*shoalpb.NetworkAttachmentConfig{{Target: "default"}}
	}
	for _, id := range u.networkRm {
		i := slices.IndexFunc(t.Networks, func(n *shoalpb.NetworkAttachmentConfig) bool { return n.Target == id })
		if i < 0 && id == "default" && len(t.Networks) == 0 {
			return errors.New("--network-rm default: the service is only on the default network; add another with --network-add first")
		}
		if i < 0 {
			return fmt.Errorf("--network-rm %s: the service is not on that network", id)
		}
		t.Networks = slices.Delete(t.Networks, i, i+1)
	}
	for _, add := range u.networkAdd {
		att, err := parseNetwork("--network-add", add)
		if err != nil {
			return err
		}
		t.Networks = append(slices.DeleteFunc(t.Networks, func(n *shoalpb.NetworkAttachmentConfig) bool { return n.Target == att.Target }), att)
	}
	return nil
}

func editLabels(flag string, labels map[string]string, add, rm []string) (map[string]string, error) {
	for _, k := range rm {
		if _, ok := labels[k]; !ok {
			return nil, fmt.Errorf("%s-rm %s: there is no such label", flag, k)
		}
		delete(labels, k)
	}
	for _, a := range add {
		k, v, err := kv(flag+"-add", a)
		if err != nil {
			return nil, err
		}
		if labels == nil {
			labels = map[string]string{}
		}
		labels[k] = v
	}
	return labels, nil
}

func newServiceUpdateCmd(g *globals) *cobra.Command {
	f := &specFlags{}
	u := &updateFlags{}
	w := &waitFlags{}
	cmd := &cobra.Command{
		Use:   "update [flags] SERVICE",
		Short: "Change a service; a new task spec rolls out to the tasks as --update-* says, and the command follows the rollout",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(func(ctx context.Context, c *client) error {
				svc, err := c.control().GetService(ctx, &shoalpb.GetServiceRequest{Service: args[0]})
				if err != nil {
					return c.explain(err)
				}
				spec := proto.Clone(svc.Spec).(*shoalpb.ServiceSpec)
				servicespec.Fill(spec)
				if err := u.resolveNetworks(ctx, c); err != nil {
					return err
				}
				if err := f.applyScalars(spec, cmd.Flags(), false); err != nil {
					return err
				}
				if err := u.apply(spec, cmd.Flags().Changed); err != nil {
					return err
				}
				svc, err = c.control().UpdateService(ctx, &shoalpb.UpdateServiceRequest{Service: svc.Id, Version: svc.Meta.GetVersion(), Spec: spec})
				if err != nil {
					return c.explain(err)
				}
				return w.printAndWait(cmd, c, svc, svc.Spec.Name, followOf(svc))
			})
		},
	}
	f.registerScalars(cmd.Flags())
	u.register(cmd)
	w.register(cmd)
	return cmd
}
