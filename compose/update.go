package compose

import (
	"time"

	"github.com/compose-spec/compose-go/v2/types"
)

// UpdateConfig is deploy.update_config (or rollback_config): how a changed
// service's replicas are replaced when `up` converges a running stack.
type UpdateConfig struct {
	// Parallelism is how many replicas are replaced at once; 0: all.
	Parallelism int `json:"parallelism"`
	// Delay is the wait between two batches.
	Delay time.Duration `json:"delay,omitempty"`
	// Order is UpdateStopFirst or UpdateStartFirst.
	Order string `json:"order"`
	// Monitor is how long a replaced replica is watched: one that exits,
	// fails to start or turns unhealthy within it counts as a failure.
	Monitor time.Duration `json:"monitor"`
	// FailureAction is UpdatePause, UpdateContinue or UpdateRollback.
	FailureAction string `json:"failure_action"`
	// MaxFailureRatio is the share of failed replicas tolerated.
	MaxFailureRatio float64 `json:"max_failure_ratio,omitempty"`
}

const (
	UpdateStopFirst  = "stop-first"
	UpdateStartFirst = "start-first"
	UpdatePause      = "pause"
	UpdateContinue   = "continue"
	UpdateRollback   = "rollback"
)

// DefaultUpdateMonitor is docker's monitor default.
const DefaultUpdateMonitor = 5 * time.Second

// AllAtOnce is how docker compose replaces a changed service that has no
// update_config: every replica at once, and a failure is just a replica
// that failed.
var AllAtOnce = UpdateConfig{Order: UpdateStopFirst, FailureAction: UpdateContinue}

// updateConfig translates one of deploy's update_config and
// rollback_config (key), with the specification's defaults: parallelism
// 1, stop-first, monitor 5s, failure_action pause.
func (t *translator) updateConfig(service, key string, uc *types.UpdateConfig) *UpdateConfig {
	if uc == nil {
		return nil
	}
	u := &UpdateConfig{Parallelism: 1, Order: UpdateStopFirst, Monitor: DefaultUpdateMonitor, FailureAction: UpdatePause,
		Delay: time.Duration(uc.Delay), MaxFailureRatio: float64(uc.MaxFailureRatio)}
	if uc.Parallelism != nil {
		u.Parallelism = int(*uc.Parallelism)
	}
	if uc.Monitor != 0 {
		u.Monitor = time.Duration(uc.Monitor)
	}
	switch uc.Order {
	case "", UpdateStopFirst:
	case UpdateStartFirst:
		// A replica's instance is named after its number (the name ps,
		// logs and the DNS know it by), and Apptainer cannot run two
		// instances of one name: the old one stops first.
		t.warn(service, "deploy."+key+".order", "start-first is not honoured: a replica's Apptainer instance is named after its number and two instances cannot share a name, so sstack stops the old replica first")
	default:
		t.fail(service, "deploy."+key+".order", "%q: use stop-first or start-first", uc.Order)
	}
	switch uc.FailureAction {
	case "":
	case UpdatePause, UpdateContinue, UpdateRollback:
		u.FailureAction = uc.FailureAction
	default:
		t.fail(service, "deploy."+key+".failure_action", "%q: use pause, continue or rollback", uc.FailureAction)
	}
	if key == "rollback_config" && u.FailureAction == UpdateRollback {
		t.fail(service, "deploy.rollback_config.failure_action", "a rollback cannot roll back; use pause or continue")
	}
	if u.MaxFailureRatio < 0 || u.MaxFailureRatio > 1 {
		t.fail(service, "deploy."+key+".max_failure_ratio", "%g: give a share between 0 and 1", u.MaxFailureRatio)
	}
	return u
}
