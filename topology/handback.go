package topology

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Headers of a message handed back by a replica that could not take it.
const (
	// HandbackHeader counts the copies made of a handed-back message.
	HandbackHeader = "Quiesce-Handback"
	// HandbackOfHeader is the message ID of the message first handed back.
	HandbackOfHeader = "Quiesce-Handback-Of"
)

// Handbacks is how many copies were made before m (0 for an original).
func Handbacks(m jetstream.Msg) int {
	n, _ := strconv.Atoi(m.Headers().Get(HandbackHeader))
	return n
}

// HandBack returns m, which this replica will not take (its configuration
// lacks m's cluster), for a replica that will. While the consumer has
// deliveries left it is a delayed nak. A nak counts as a delivery, and a
// message delivered maxDeliver times is delivered no more, so on the
// second-to-last delivery a copy is published under a message ID of its own
// (HandbackOfHeader's ID, "~h" and the copy's number: a copy published twice
// is stored once) and m is acknowledged: the copy starts with every delivery
// ahead of it. rewrite, when set, adjusts the copy before it is published.
// It reports whether a copy was made.
func HandBack(ctx context.Context, js jetstream.Publisher, m jetstream.Msg, maxDeliver int, delay time.Duration,
	rewrite func(*nats.Msg)) (bool, error) {
	attempt := 1
	if meta, err := m.Metadata(); err == nil && meta.NumDelivered > 0 {
		attempt = int(meta.NumDelivered)
	}
	if maxDeliver <= 0 || attempt < maxDeliver-1 {
		return false, m.NakWithDelay(delay)
	}
	copyOf := m.Headers().Get(HandbackOfHeader)
	if copyOf == "" {
		copyOf = m.Headers().Get(jetstream.MsgIDHeader)
	}
	n := Handbacks(m) + 1
	c := nats.NewMsg(m.Subject())
	c.Data = m.Data()
	for k, v := range m.Headers() {
		c.Header[k] = append([]string(nil), v...)
	}
	c.Header.Set(HandbackHeader, strconv.Itoa(n))
	c.Header.Set(HandbackOfHeader, copyOf)
	if rewrite != nil {
		rewrite(c)
	}
	if copyOf != "" {
		c.Header.Set(jetstream.MsgIDHeader, copyOf+"~h"+strconv.Itoa(n))
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.PublishMsg(pctx, c); err != nil {
		// Not copied: one delivery is still left to try again.
		_ = m.NakWithDelay(delay)
		return false, fmt.Errorf("hand back %s: %w", m.Subject(), err)
	}
	if err := m.DoubleAck(pctx); err != nil {
		// The copy exists; the original comes back once more and makes the
		// same copy, which the stream drops as a duplicate.
		return true, fmt.Errorf("hand back %s: ack the original: %w", m.Subject(), err)
	}
	return true, nil
}

// HandbackDelay is how long a handed-back message waits before its next
// delivery: doubling from base with each delivery and each copy, so a
// replica that knows the message's cluster gets it soon during a rolling
// update, and a message no replica knows costs little until its job's
// deadline; at most ceiling.
func HandbackDelay(m jetstream.Msg, base, ceiling time.Duration) time.Duration {
	attempt := 1
	if meta, err := m.Metadata(); err == nil {
		attempt = int(meta.NumDelivered)
	}
	steps := max(attempt-1, 0) + 3*max(Handbacks(m), 0)
	d := base << min(steps, 20)
	if d <= 0 || d > ceiling {
		d = ceiling
	}
	return d
}
