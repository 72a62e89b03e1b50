package scheduling

import (
	"fmt"
	"time"
)

// RejectReason says why a request was rejected for load; it is the value
// of the reason label of the node's drop metric.
type RejectReason string

// Reasons a request is rejected with ErrRejected.
const (
	// ReasonDeadline: the expected response time exceeds the request's
	// QoSMaxRespT when it arrives.
	ReasonDeadline RejectReason = "deadline"
	// ReasonTooLarge: the function needs more memory or CPU than the whole pool.
	ReasonTooLarge RejectReason = "too_large"
	// ReasonNoCapacity: the pool is full and queueing is disabled.
	ReasonNoCapacity RejectReason = "no_capacity"
	// ReasonQueueFull: the pool is full and so is the queue.
	ReasonQueueFull RejectReason = "queue_full"
	// ReasonQueueTimeout: the request waited scheduler.queue.maxwait in the queue.
	ReasonQueueTimeout RejectReason = "queue_timeout"
	// ReasonQueueDeadline: while queued, the request's deadline could no longer be met.
	ReasonQueueDeadline RejectReason = "queue_deadline"
	// ReasonShutdown: the node shut down while the request was queued.
	ReasonShutdown RejectReason = "shutdown"
	// ReasonOther: any other rejection.
	ReasonOther RejectReason = "other"
)

// RejectReasons lists every RejectReason, so that a metric can export all
// of them from the start.
func RejectReasons() []RejectReason {
	return []RejectReason{
		ReasonDeadline, ReasonTooLarge, ReasonNoCapacity, ReasonQueueFull,
		ReasonQueueTimeout, ReasonQueueDeadline, ReasonShutdown, ReasonOther,
	}
}

// Hooks receives the scheduling events that only the scheduler sees, for
// metrics. Its methods run on the request path, sometimes under the
// scheduler's lock: they must be cheap, never block and be safe for
// concurrent use.
type Hooks interface {
	// Rejected is called once for every request rejected for load.
	Rejected(reason RejectReason)
	// Dequeued is called once for every request that waited in the queue,
	// when it leaves it for good (handed a container or the turn to start
	// one, rejected, or abandoned by its client), with the time it spent
	// queued.
	Dequeued(waited time.Duration)
}

// hooksBox holds a Hooks value for an atomic pointer.
type hooksBox struct{ h Hooks }

// SetHooks makes h receive the scheduler's events from now on; nil stops
// them. It is safe to call while requests are scheduled.
func (s *Scheduler) SetHooks(h Hooks) {
	if h == nil {
		s.hooks.Store(nil)
		return
	}
	s.hooks.Store(&hooksBox{h: h})
}

// rejectFor counts a rejection for reason and returns its ErrRejected error.
func (s *Scheduler) rejectFor(reason RejectReason, format string, args ...any) error {
	s.drops.Add(1)
	if b := s.hooks.Load(); b != nil {
		b.h.Rejected(reason)
	}
	return fmt.Errorf("%w: %s", ErrRejected, fmt.Sprintf(format, args...))
}

// reject is rejectFor with ReasonOther.
func (s *Scheduler) reject(format string, args ...any) error {
	return s.rejectFor(ReasonOther, format, args...)
}

// dequeued reports the time a request spent in the queue.
func (s *Scheduler) dequeued(waited time.Duration) {
	if b := s.hooks.Load(); b != nil {
		b.h.Dequeued(waited)
	}
}
