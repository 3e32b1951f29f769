package integration

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"shoal/internal/imagetar"
	"shoal/internal/testutil"
	"shoal/manager/ca"
	shoalpb "shoal/proto"
)

// noImages is what a node of the process runtime answers to image commands.
const noImages = "this node runs the process runtime, which has no images; start it with --runtime containerd"

// What the image and volume commands do on nodes of the process runtime,
// which has no images but has volumes: refusals that say what to do, and
// empty tables with their headers.
func TestImagesAndVolumesWithProcessRuntime(t *testing.T) {
	t.Parallel()
	c := testutil.NewCluster(t, 1, 1)
	m, w := c.Managers[0], c.Workers[0]
	tarPath := filepath.Join(t.TempDir(), "web.tar")
	if err := imagetar.WriteFile(tarPath, imagetar.Image{Name: "web:v1", Files: []imagetar.File{{Path: "web", Mode: 0o755, Data: []byte("#!/bin/sh\n")}}}); err != nil {
		t.Fatal(err)
	}

	t.Run("image load is refused naming the runtime", func(t *testing.T) {
		for _, n := range []*testutil.Node{m, w} {
			_, err := n.Shoal(t, "image", "load", "-i", tarPath)
			wantError(t, n.Name+": image load", err, noImages)
		}
		missing := filepath.Join(t.TempDir(), "nosuch.tar")
		_, err := m.Shoal(t, "image", "load", "-i", missing)
		wantError(t, "image load of a missing file", err, "-i "+missing, "no such file")
	})

	t.Run("image ls is empty with its header", func(t *testing.T) {
		for _, n := range []*testutil.Node{m, w} {
			out, err := n.Shoal(t, "image", "ls")
			if err != nil {
				t.Fatalf("%s: image ls: %v", n.Name, err)
			}
			if got := strings.Join(strings.Fields(out), " "); got != "NODE IMAGE DIGEST SIZE CREATED" {
				t.Fatalf("%s: image ls printed %q, want only the header", n.Name, out)
			}
		}
	})

	t.Run("volume commands", func(t *testing.T) {
		for _, n := range []*testutil.Node{m, w} {
			out, err := n.Shoal(t, "volume", "ls")
			if err != nil {
				t.Fatalf("%s: volume ls: %v", n.Name, err)
			}
			if got := strings.Join(strings.Fields(out), " "); got != "VOLUME NAME TASKS CREATED" {
				t.Fatalf("%s: volume ls printed %q, want only the header", n.Name, out)
			}
			_, err = n.Shoal(t, "volume", "rm", "nosuch")
			wantError(t, n.Name+": volume rm nosuch", err, "no such volume: nosuch")
			_, err = n.Shoal(t, "volume", "inspect", "nosuch")
			wantError(t, n.Name+": volume inspect nosuch", err, "no such volume: nosuch")
		}
	})

	// Nodes reach each other's Images on the cluster port with their node
	// certificates; Load and Volumes are only served on the local socket.
	t.Run("cluster port", func(t *testing.T) {
		conn, err := grpc.NewClient(m.Addr, grpc.WithTransportCredentials(credentials.NewTLS(loadCreds(t, w).ClientTLS(ca.RoleManager))))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		images := shoalpb.NewImagesClient(conn)
		// all_nodes makes the manager ask the worker in turn, with its
		// own certificate.
		resp, err := images.List(callCtx(t), &shoalpb.ListImagesRequest{AllNodes: true})
		if err != nil {
			t.Fatalf("Images.List with a worker certificate: %v", err)
		}
		if len(resp.Images) != 0 || len(resp.Errors) != 0 {
			t.Fatalf("Images.List of every node: %v, want no images and no node that could not be asked", resp)
		}
		stream, err := images.Export(callCtx(t), &shoalpb.ExportImageRequest{Name: "nosuch:v1", SearchCluster: true})
		if err == nil {
			_, err = stream.Recv()
		}
		if st, _ := status.FromError(err); st.Code() != codes.NotFound || !strings.Contains(st.Message(), "image nosuch:v1 not found on any node") {
			t.Fatalf("Export of an image no node has: %v, want NotFound naming it", err)
		}
		load, err := images.Load(callCtx(t))
		if err == nil {
			_ = load.Send(&shoalpb.ImageChunk{Data: []byte("x")})
			_, err = load.CloseAndRecv()
		}
		if status.Code(err) != codes.PermissionDenied {
			t.Fatalf("Images.Load on the cluster port: %v, want PermissionDenied", err)
		}
		// Volumes is not even registered there: Unimplemented, or
		// PermissionDenied should it ever be.
		_, err = shoalpb.NewVolumesClient(conn).List(callCtx(t), &shoalpb.ListVolumesRequest{})
		if c := status.Code(err); c != codes.Unimplemented && c != codes.PermissionDenied {
			t.Fatalf("Volumes.List on the cluster port: %v, want it refused", err)
		}
	})
}
