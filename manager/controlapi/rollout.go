package controlapi

import (
	"context"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"shoal/manager/servicespec"
	"shoal/manager/state"
	shoalpb "shoal/proto"
)

// RollbackService puts a service back on one of its kept specs in state
// ROLLBACK_STARTED; the orchestrator rolls the tasks back under the
// rollback_config of the spec left. A canary update rolled back is rolled
// back like any other. A job starts a new run of the kept spec.
func (s *Server) RollbackService(ctx context.Context, req *shoalpb.RollbackServiceRequest) (*shoalpb.Service, error) {
	return s.changeService(ctx, req.GetService(), func(tx state.ReadTx, cur *shoalpb.Service) ([]*shoalpb.StoreAction, error) {
		upd, err := servicespec.Rollback(cur, req.GetToVersion(), "rollback by hand", s.cfg.Now())
		if err != nil {
			if len(cur.GetPreviousSpecs()) == 0 {
				return nil, status.Error(codes.FailedPrecondition, err.Error())
			}
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		servicespec.FillDefaults(upd.Spec)
		// The kept spec was valid when stored; its networks or ports may
		// have gone or been taken since.
		err = resolveNetworks(tx, upd.Spec)
		var actions []*shoalpb.StoreAction
		if err == nil {
			actions, err = replaceService(tx, cur, upd)
		}
		if err != nil {
			st := status.Convert(err)
			return nil, status.Errorf(st.Code(), "service %s cannot go back to its earlier spec: %s", cur.Spec.GetName(), st.Message())
		}
		return actions, nil
	})
}

// PromoteService lets an update waiting on its canaries go on: promoted,
// back to UPDATING, and the orchestrator replaces the remaining tasks.
func (s *Server) PromoteService(ctx context.Context, req *shoalpb.PromoteServiceRequest) (*shoalpb.Service, error) {
	return s.changeService(ctx, req.GetService(), func(tx state.ReadTx, cur *shoalpb.Service) ([]*shoalpb.StoreAction, error) {
		name := cur.GetSpec().GetName()
		if st := cur.GetUpdateStatus(); st.GetState() != shoalpb.UpdateState_UPDATE_STATE_CANARY {
			now := "it has no update in progress"
			if st != nil {
				now = "its update is " + UpdateStateName(st.GetState())
			}
			return nil, status.Errorf(codes.FailedPrecondition, "service %s is not waiting on canaries (%s); only an update in state canary can be promoted: start one with 'shoal service update --update-canary N …', and see the state with 'shoal service inspect %s'", name, now, name)
		}
		upd := proto.Clone(cur).(*shoalpb.Service)
		upd.UpdateStatus.State = shoalpb.UpdateState_UPDATE_STATE_UPDATING
		upd.UpdateStatus.Promoted = true
		upd.UpdateStatus.Message = "promoted by hand"
		if upd.Meta == nil {
			upd.Meta = &shoalpb.Meta{}
		}
		upd.Meta.UpdatedAt = timestamppb.New(s.cfg.Now())
		return []*shoalpb.StoreAction{{Kind: shoalpb.StoreActionKind_STORE_ACTION_UPDATE, Target: &shoalpb.StoreAction_Service{Service: upd}}}, nil
	})
}

// UpdateStateName is the user-facing name of an update state: "updating",
// "canary", "paused", "completed", "rollback_started", "rollback_paused",
// "rollback_completed" (Docker's names), or "none".
func UpdateStateName(s shoalpb.UpdateState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "UPDATE_STATE_"))
}
