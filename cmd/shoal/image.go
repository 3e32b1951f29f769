package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"shoal/internal/format"
	shoalpb "shoal/proto"
	"shoal/worker/images"
)

func newImageCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "image", Short: "Manage images (each node keeps its own; nodes fetch missing ones from each other)"}
	cmd.AddCommand(newImageLoadCmd(g), newImageLsCmd(g))
	return cmd
}

func newImageLoadCmd(g *globals) *cobra.Command {
	var input string
	cmd := &cobra.Command{
		Use:   "load [-i FILE.tar]",
		Short: "Load an image tar (docker save or OCI layout) into this node; other nodes fetch it from here",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var in io.Reader
			what := "standard input"
			if input == "" || input == "-" {
				if fi, err := os.Stdin.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
					return fmt.Errorf("no image given: use -i FILE.tar, or pipe a tar into 'shoal image load'")
				}
				in = os.Stdin
			} else {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("-i %s: %w", input, err)
				}
				defer f.Close()
				if fi, err := f.Stat(); err == nil && fi.IsDir() {
					return fmt.Errorf("-i %s is a directory; give the image's tar file", input)
				}
				in, what = f, input
			}
			br := bufio.NewReaderSize(in, images.ChunkSize)
			if err := checkArchive(br, what); err != nil {
				return err
			}
			c, err := g.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			// No deadline: a large image takes as long as it takes; ^C
			// ends the command and with it the stream.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			loaded, err := loadImage(ctx, c, br, what)
			if err != nil {
				return explainImages(c, err)
			}
			for _, img := range loaded {
				if img.GetName() != "" {
					fmt.Fprintf(cmd.OutOrStdout(), "Loaded image: %s\n", img.GetName())
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "Loaded image ID: %s\n", img.GetDigest())
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "read the image tar from FILE instead of standard input")
	return cmd
}

// checkArchive refuses input that is plainly no tar (nor gzip-compressed
// tar) before anything is sent, naming the file.
func checkArchive(br *bufio.Reader, what string) error {
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read %s: %w", what, err)
	}
	switch {
	case len(head) == 0:
		return fmt.Errorf("%s is empty; give an image tar made by 'docker save' or an OCI layout tar", what)
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return nil // gzip; the node decompresses it
	case len(head) >= 262 && bytes.Equal(head[257:262], []byte("ustar")):
		return nil
	}
	return fmt.Errorf("%s is not a tar archive; give an image tar made by 'docker save' or an OCI layout tar", what)
}

// loadImage streams r to the node's Images.Load in chunks.
func loadImage(ctx context.Context, c *client, r io.Reader, what string) ([]*shoalpb.Image, error) {
	stream, err := shoalpb.NewImagesClient(c.conn).Load(ctx)
	if err != nil {
		return nil, err
	}
	for {
		// A fresh buffer per chunk: gRPC may hold a sent message
		// after Send returns, so its bytes must not change.
		buf := make([]byte, images.ChunkSize)
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&shoalpb.ImageChunk{Data: buf[:n]}); err != nil {
				if err == io.EOF {
					break // the node ended the call; its answer says why
				}
				return nil, err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			break
		}
		if rerr != nil {
			_ = stream.CloseSend()
			return nil, fmt.Errorf("read %s: %w", what, rerr)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, err
	}
	return resp.GetImages(), nil
}

// explainImages adds what only image commands can say to client.explain.
func explainImages(c *client, err error) error {
	return c.explainLocal(err, "images", "images are loaded into one node")
}

// imageRow is one line of `image ls`; its field names are the --format names.
type imageRow struct {
	Node    string
	Image   string
	Digest  string
	Size    string
	Created string
}

func newImageLsCmd(g *globals) *cobra.Command {
	var quiet, local bool
	var tmpl string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List images: on a manager every node's, on a worker its own",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(func(ctx context.Context, c *client) error {
				resp, err := shoalpb.NewImagesClient(c.conn).List(ctx, &shoalpb.ListImagesRequest{AllNodes: !local})
				if err != nil {
					return explainImages(c, err)
				}
				for _, e := range resp.Errors {
					fmt.Fprintf(cmd.ErrOrStderr(), "Warning: images of %s are not listed\n", e)
				}
				if quiet {
					seen := map[string]bool{}
					for _, img := range resp.Images {
						if !seen[img.GetName()] {
							seen[img.GetName()] = true
							fmt.Fprintln(cmd.OutOrStdout(), img.GetName())
						}
					}
					return nil
				}
				nodes := nodeAddrs(ctx, c)
				now := time.Now()
				rows := make([]imageRow, 0, len(resp.Images))
				for _, img := range resp.Images {
					node := nodes[img.GetNodeId()]
					if node == "" {
						node = img.GetNodeId()
					}
					created := "N/A"
					if t := img.GetCreatedAt(); t != nil {
						created = ago(now.Sub(t.AsTime()))
					}
					rows = append(rows, imageRow{Node: node, Image: img.GetName(), Digest: shortDigest(img.GetDigest()), Size: humanSize(img.GetSize()), Created: created})
				}
				return format.Rows(cmd.OutOrStdout(), tmpl, `table {{.Node}}\t{{.Image}}\t{{.Digest}}\t{{.Size}}\t{{.Created}}`, rows)
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "only print image names")
	cmd.Flags().BoolVarP(&local, "local", "l", false, "only this node's images, even on a manager")
	cmd.Flags().StringVar(&tmpl, "format", "", "table template, Go template, or json")
	return cmd
}

// nodeAddrs maps node IDs to addresses when the daemon is a manager; a
// worker's images are listed with its ID.
func nodeAddrs(ctx context.Context, c *client) map[string]string {
	out := map[string]string{}
	if nl, err := c.control().ListNodes(ctx, &shoalpb.ListNodesRequest{}); err == nil {
		for _, v := range nl.Nodes {
			out[v.Node.Id] = v.Node.GetStatus().GetAddr()
		}
	}
	return out
}

// shortDigest is the first 12 hex digits of a digest, as docker shows IDs.
func shortDigest(d string) string {
	_, hex, ok := strings.Cut(d, ":")
	if !ok {
		hex = d
	}
	if len(hex) > 12 {
		hex = hex[:12]
	}
	return hex
}

// humanSize prints bytes in decimal units, as docker does ("12.3MB").
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}
