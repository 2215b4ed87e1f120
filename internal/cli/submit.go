package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// submission is a request published (or found already submitted) and what
// is known of its fate so far.
type submission struct {
	req    messages.JobRequest
	jobID  string
	digest string
	// duplicate: the server already had a request with this ID and dropped
	// this one, or the request ID's claim shows the same request became a
	// job already; nothing new was delivered.
	duplicate bool
	// rejections delivers the rejection events of the job's subject that
	// may answer this request.
	rejections <-chan messages.Rejection
	stop       func()
	// h, for a duplicate not yet known to be a job, reads the request ID's
	// claim while it is followed: the request that holds the ID may become
	// a job, and it may not be this one.
	h *topology.Handles
}

// errReused is the answer to a request whose ID already named another.
func errReused(req messages.JobRequest, c messages.RequestClaim) error {
	return withCode(ExitRejected, fmt.Errorf("request ID %q already named a different request (job %s, submitted %s); "+
		"this one was not submitted: send it with a new request ID",
		messages.Bound(req.RequestID, 256), c.JobID, c.At.UTC().Format(time.RFC3339)))
}

// claimOf reads the claim of a request ID, if the server has one.
func claimOf(ctx context.Context, h *topology.Handles, requestID string) (messages.RequestClaim, bool) {
	var c messages.RequestClaim
	if h == nil || h.Requests == nil {
		return c, false
	}
	e, err := h.Requests.Get(ctx, messages.RequestKey(requestID))
	if err != nil || json.Unmarshal(e.Value(), &c) != nil || c.Schema != messages.RequestClaimSchema {
		return c, false
	}
	return c, true
}

// submit publishes a request with its request ID as the message ID and
// says what became of it. A request ID that already named a different
// request is refused before anything is published; one whose same request
// is a job already is followed, not published again; one the server drops
// as a duplicate is reported as such, never as submitted.
func submit(ctx context.Context, js jetstream.JetStream, req messages.JobRequest) (*submission, error) {
	s := &submission{req: req, jobID: req.JobID(), digest: req.Digest(), stop: func() {}}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	h, _ := topology.Bind(pctx, js) // absent on a server quiesce never ran against
	if c, ok := claimOf(pctx, h, req.RequestID); ok {
		if c.Digest != s.digest || c.JobID != s.jobID {
			return nil, errReused(req, c)
		}
		s.duplicate = true
		s.rejections = make(chan messages.Rejection)
		return s, nil
	}
	// Rejections published from now on answer this submission; older ones
	// answer earlier submissions of the same ID.
	s.rejections, s.stop = watchRejections(ctx, js, s.jobID, jetstream.DeliverNewPolicy)
	ack, err := js.Publish(pctx, messages.SubjectSubmit, data, jetstream.WithMsgID(req.RequestID))
	if err != nil {
		s.stop()
		return nil, withCode(ExitError, fmt.Errorf("publish request: %w", err))
	}
	if !ack.Duplicate {
		return s, nil
	}
	// The server dropped this copy: within its duplicate window it keeps
	// the first request of an ID, whatever the later ones say.
	s.duplicate = true
	s.stop()
	if c, ok := claimOf(pctx, h, req.RequestID); ok && (c.Digest != s.digest || c.JobID != s.jobID) {
		return nil, errReused(req, c)
	}
	// The request that holds the ID may have named another cluster, so
	// another job: its rejection is looked for under every job.
	s.rejections, s.stop = watchRejections(ctx, js, "*", jetstream.DeliverAllPolicy)
	s.h = h
	return s, nil
}

// watchRejections delivers the rejection events of a job's subject ("*" for
// every job), from the policy's start, until stop.
func watchRejections(ctx context.Context, js jetstream.JetStream, jobID string, policy jetstream.DeliverPolicy) (<-chan messages.Rejection, func()) {
	ch := make(chan messages.Rejection, 16)
	cons, err := js.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectRejected(jobID)}, DeliverPolicy: policy,
	})
	if err != nil {
		return ch, func() {}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var r messages.Rejection
		if json.Unmarshal(m.Data(), &r) == nil {
			select {
			case ch <- r:
			case <-ctx.Done():
			}
		}
	})
	if err != nil {
		return ch, func() {}
	}
	return ch, cc.Stop
}

// answer turns a rejection event into the submitter's error, or nil when
// the event answers another request (another ID sharing the job's subject
// cannot: the job ID is derived from the request ID).
func (s *submission) answer(r messages.Rejection) error {
	if r.RequestID != messages.Bound(s.req.RequestID, 256) {
		return nil
	}
	if s.duplicate && r.RequestDigest != "" && r.RequestDigest != s.digest {
		return withCode(ExitRejected, fmt.Errorf("request ID %q was used by an earlier, different request, which was rejected (%s); "+
			"this one was dropped by the server as its duplicate: send it with a new request ID", s.req.RequestID, r.Reason))
	}
	if s.duplicate {
		return withCode(ExitRejected, fmt.Errorf("request rejected when it was first submitted: %s", r.Reason))
	}
	return withCode(ExitRejected, fmt.Errorf("request rejected: %s", r.Reason))
}

// announce is the line that says what became of the submission.
func (s *submission) announce() string {
	if s.duplicate {
		return fmt.Sprintf("job %s: request %s was submitted before; this submission was not delivered again (duplicate)",
			s.jobID, s.req.RequestID)
	}
	return fmt.Sprintf("job %s submitted (request %s)", s.jobID, s.req.RequestID)
}

// followSubmission follows a submitted request's job to its end, or to the
// rejection of the request, and its clean-up for up to cleanupWait.
func followSubmission(ctx context.Context, js jetstream.JetStream, s *submission, p *progress, cleanupWait time.Duration) (messages.Job, error) {
	defer s.stop()
	var check func(context.Context) error
	if s.h != nil {
		check = func(ctx context.Context) error {
			if c, ok := claimOf(ctx, s.h, s.req.RequestID); ok && (c.Digest != s.digest || c.JobID != s.jobID) {
				return errReused(s.req, c)
			}
			return nil
		}
	}
	return followWith(ctx, js, s.jobID, p, cleanupWait, s.rejections, s.answer, check)
}
