package volumes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	shoalpb "shoal/proto"
)

// Server implements shoalpb.VolumesServer over a Store. Register it on the
// node's local socket.
type Server struct {
	shoalpb.UnimplementedVolumesServer
	store  *Store
	usedBy func() map[string][]string
}

// NewServer returns a Server. usedBy maps each volume name to the IDs of the
// tasks on this node that mount it; nil means no task uses any.
func NewServer(store *Store, usedBy func() map[string][]string) *Server {
	if usedBy == nil {
		usedBy = func() map[string][]string { return nil }
	}
	return &Server{store: store, usedBy: usedBy}
}

func (s *Server) toProto(v Volume, users map[string][]string) *shoalpb.Volume {
	out := &shoalpb.Volume{Name: v.Name, Mountpoint: v.Mountpoint, UsedBy: sorted(users[v.Name])}
	if !v.CreatedAt.IsZero() {
		out.CreatedAt = timestamppb.New(v.CreatedAt)
	}
	return out
}

func sorted(ids []string) []string {
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return ids
}

// List lists this node's volumes.
func (s *Server) List(context.Context, *shoalpb.ListVolumesRequest) (*shoalpb.ListVolumesResponse, error) {
	vols, err := s.store.List()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	users := s.usedBy()
	resp := &shoalpb.ListVolumesResponse{}
	for _, v := range vols {
		resp.Volumes = append(resp.Volumes, s.toProto(v, users))
	}
	return resp, nil
}

// Inspect returns one volume.
func (s *Server) Inspect(_ context.Context, req *shoalpb.InspectVolumeRequest) (*shoalpb.Volume, error) {
	v, err := s.store.Inspect(req.GetName())
	if err != nil {
		return nil, toStatus(req.GetName(), err)
	}
	return s.toProto(v, s.usedBy()), nil
}

// Remove deletes a volume and its data, refusing one that a task on this
// node uses unless forced.
func (s *Server) Remove(_ context.Context, req *shoalpb.RemoveVolumeRequest) (*shoalpb.RemoveVolumeResponse, error) {
	name := req.GetName()
	if _, err := s.store.Inspect(name); err != nil {
		return nil, toStatus(name, err)
	}
	if users := sorted(s.usedBy()[name]); len(users) > 0 && !req.GetForce() {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is in use by task(s) %s; remove the service first or use --force", name, strings.Join(users, ", "))
	}
	if err := s.store.Remove(name); err != nil {
		return nil, toStatus(name, err)
	}
	return &shoalpb.RemoveVolumeResponse{}, nil
}

// toStatus maps the store's errors to gRPC codes; this is the only place.
func toStatus(name string, err error) error {
	switch {
	case errors.Is(err, ErrNotFound):
		return status.Errorf(codes.NotFound, "no such volume: %s; 'shoal volume ls' lists this node's volumes", name)
	case errors.Is(err, ErrInvalidName):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	return status.Error(codes.Internal, fmt.Sprint(err))
}
