package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"shoal/internal/format"
	shoalpb "shoal/proto"
)

func newVolumeCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage this node's named volumes (tasks create them on first use)"}
	cmd.AddCommand(newVolumeLsCmd(g), newVolumeInspectCmd(g), newVolumeRmCmd(g))
	return cmd
}

// withVolumes is withClient for the Volumes service, which every node serves
// on its local socket only.
func (g *globals) withVolumes(fn func(ctx context.Context, v shoalpb.VolumesClient) error) error {
	return g.call(func(ctx context.Context, c *client) error {
		return explainVolumes(c, fn(ctx, shoalpb.NewVolumesClient(c.conn)))
	})
}

func explainVolumes(c *client, err error) error {
	return c.explainLocal(err, "volumes", "volumes belong to one node")
}

// volumeRow is one line of `volume ls`; its field names are the --format names.
type volumeRow struct {
	Name       string `header:"VOLUME NAME"`
	Tasks      int
	Created    string
	Mountpoint string
	UsedBy     string
}

func newVolumeLsCmd(g *globals) *cobra.Command {
	var quiet bool
	var tmpl string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List this node's volumes",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withVolumes(func(ctx context.Context, v shoalpb.VolumesClient) error {
				resp, err := v.List(ctx, &shoalpb.ListVolumesRequest{})
				if err != nil {
					return err
				}
				now := time.Now()
				rows := make([]volumeRow, 0, len(resp.Volumes))
				for _, vol := range resp.Volumes {
					if quiet {
						fmt.Fprintln(cmd.OutOrStdout(), vol.Name)
						continue
					}
					created := "N/A"
					if t := vol.GetCreatedAt(); t != nil {
						created = ago(now.Sub(t.AsTime()))
					}
					rows = append(rows, volumeRow{
						Name: vol.Name, Tasks: len(vol.UsedBy), Created: created,
						Mountpoint: vol.Mountpoint, UsedBy: strings.Join(vol.UsedBy, ","),
					})
				}
				if quiet {
					return nil
				}
				return format.Rows(cmd.OutOrStdout(), tmpl, `table {{.Name}}\t{{.Tasks}}\t{{.Created}}`, rows)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print volume names")
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	return cmd
}

func newVolumeInspectCmd(g *globals) *cobra.Command {
	var tmpl string
	cmd := &cobra.Command{
		Use:   "inspect VOLUME [VOLUME...]",
		Short: "Show volumes in detail (JSON)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withVolumes(func(ctx context.Context, v shoalpb.VolumesClient) error {
				var vols []*shoalpb.Volume
				for _, name := range args {
					vol, err := v.Inspect(ctx, &shoalpb.InspectVolumeRequest{Name: name})
					if err != nil {
						return err
					}
					vols = append(vols, vol)
				}
				if tmpl != "" && tmpl != "json" {
					for _, vol := range vols {
						if err := format.One(cmd.OutOrStdout(), tmpl, vol); err != nil {
							return err
						}
					}
					return nil
				}
				return printProtoArray(cmd, vols)
			})
		},
	}
	cmd.Flags().StringVarP(&tmpl, "format", "f", "", "Go template over the volume ({{.Mountpoint}}), or json")
	return cmd
}

func newVolumeRmCmd(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [--force] VOLUME [VOLUME...]",
		Aliases: []string{"remove"},
		Short:   "Remove volumes and their data from this node",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.call(func(ctx context.Context, c *client) error {
				vc := shoalpb.NewVolumesClient(c.conn)
				// Like docker, one volume that cannot go does not keep
				// the others: each is tried and every failure reported.
				var errs []error
				for _, name := range args {
					if _, err := vc.Remove(ctx, &shoalpb.RemoveVolumeRequest{Name: name, Force: force}); err != nil {
						errs = append(errs, explainVolumes(c, err))
						continue
					}
					fmt.Fprintln(cmd.OutOrStdout(), name)
				}
				return errors.Join(errs...)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove volumes even while tasks on this node use them")
	return cmd
}
