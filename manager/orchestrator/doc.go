// Package orchestrator closes the gap between the services users declare and
// the tasks that exist: it creates, shuts down, orphans, removes and deletes
// tasks, and places pending tasks on nodes through the scheduler.
//
// The package has two layers (docs/orchestration.md, "Who writes what"):
//
//   - Pure reconcilers. Reconcile(Input) returns the Plan for one service:
//     which tasks to create, which to shut down, orphan, remove or delete,
//     and when the plan would next change on its own (Wake). Schedule does
//     the same for placement. Neither reads a clock, the store or anything
//     else than its arguments (new task IDs come from Input.NewID), and
//     neither modifies what it is given: every changed task is a copy that
//     keeps the Meta.Version it was read with, so writing it is a
//     compare-and-swap against the dispatcher's status reports.
//
//   - The leader loop (Orchestrator.Run): store events mark services dirty
//     (except agents' reports that a live task progressed, which cannot
//     change a plan unless it says Plan.RunningMatters), a short debounce
//     collects bursts, then the dirty services are reconciled, the plans
//     written in batches, and pending tasks scheduled.
//     A full pass runs at start and every 10s, and a timer fires at the
//     earliest Wake, so a missed event is repaired, never fatal.
//
// # Vocabulary
//
// A task is dead when its status is terminal (COMPLETE, SHUTDOWN, FAILED,
// REJECTED, ORPHANED) and runnable when it is not dead and its desired state
// is RUNNING. A unit is where a service wants one task: a slot (replicated
// services and jobs) or a node (global services and jobs).
//
// # Restarts
//
// A dead task whose desired state is still RUNNING is an undecided restart:
// the orchestrator sets its desired state to SHUTDOWN (it becomes history)
// when it creates the replacement in the same unit, and leaves it RUNNING
// while the replacement waits for the restart delay or will never come
// (condition NONE, ON_FAILURE after a success, max_attempts reached). Either
// way the unit still counts towards the service's replicas, so a refused
// restart leaves the service short, as in Docker. A dead task whose desired
// state is SHUTDOWN was stopped on purpose (scale down, drain, update, node
// down): a unit holding only such tasks is free and, when the service needs
// it, filled at once.
//
// Conventions of RestartPolicy:
//   - delay_ms 0 means DefaultRestartDelay (5s); delay_ms < 0 means no delay
//     (the API stores -1 for an explicit `--restart-delay 0s`).
//   - max_attempts 0 means unlimited. Otherwise a unit is restarted while the
//     number of its failures (tasks that ended FAILED, REJECTED or COMPLETE
//     from the same spec version, and the same job iteration for jobs) whose
//     status timestamp lies within window_ms before the latest failure (or
//     ever, when window_ms is 0) is at most max_attempts. The window ends at
//     the failure, not at now, so a decision never flips later on its own.
//   - ON_FAILURE restarts FAILED and REJECTED tasks only; ANY restarts every
//     dead task except a job's successful completion; NONE never restarts.
//   - Orphaned tasks (node down) and drained tasks are replaced at once and
//     count no attempt; a spec update replaces a dead unit at once too.
//
// # Rollouts and drains
//
// A unit holds one task, except that a leaving task (outdated, or on a
// drained node) stays beside its successor until the successor is ready:
// start-first updates, canaries until promotion, drains (keepOne). The
// rollout's progress is the service's update_status, read with the tasks
// and written back in the plan (Plan.Service); update.go moves units,
// rollout.go judges failures and completion, drain.go moves drained tasks.
// docs/releases.md has the rules.
//
// # Start order
//
// A service whose depends_on is not met yet (servicespec.Waiting, consulted
// only while the service has no task) gets no task: the loop reads its
// dependencies and passes the reason in Input.Waiting, and reconciles it
// again on every event of a dependency (loop.waiters).
//
// # History
//
// Each unit keeps its newest Settings.TaskHistoryLimit dead tasks (default
// 5), at least max_attempts+1 of them so attempts stay countable; older dead
// tasks are deleted. An undecided restart and a job's completion of the
// current iteration are never deleted.
package orchestrator
