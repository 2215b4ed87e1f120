package observability

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// ConsumerLookup is the part of jetstream.JetStream the backlog collector
// uses: one consumer-info request per consumer.
type ConsumerLookup interface {
	Consumer(ctx context.Context, stream, consumer string) (jetstream.Consumer, error)
}

var _ ConsumerLookup = jetstream.JetStream(nil)

// DefaultBacklogTimeout bounds one scrape's consumer-info requests. It is
// short so that a slow or partitioned NATS makes the backlog series vanish
// from one scrape rather than stall the whole /metrics response.
const DefaultBacklogTimeout = 2 * time.Second

// BacklogOptions configures a BacklogCollector. Zero values take defaults.
type BacklogOptions struct {
	// Stream holding the tasks; default messages.StreamTasks.
	Stream string
	// Kinds to report; default messages.Kinds.
	Kinds []messages.Kind
	// ConsumerName maps a kind to its durable consumer; default
	// topology.TaskConsumer, the consumers the workers bind.
	ConsumerName func(messages.Kind) string
	// Timeout bounds one scrape; default DefaultBacklogTimeout.
	Timeout time.Duration
}

// BacklogCollector is a prometheus.Collector that reads, at each scrape, the
// JetStream consumer info of every task kind's durable consumer:
//
//   - quiesce_jetstream_consumer_pending_messages: the backlog, tasks not yet
//     delivered (NumPending);
//   - quiesce_jetstream_consumer_ack_pending_messages: tasks in flight,
//     delivered and not yet acknowledged, fleet-wide (NumAckPending);
//   - quiesce_jetstream_consumer_redelivered_messages: in-flight tasks
//     delivered more than once (NumRedelivered);
//   - quiesce_jetstream_consumer_waiting_pulls: pull requests waiting, a sign
//     of idle workers (NumWaiting).
//
// A consumer whose info cannot be read within the timeout (or does not exist
// yet) is left out of that scrape and counted in
// quiesce_jetstream_consumer_info_errors_total.
type BacklogCollector struct {
	ctx  context.Context
	js   ConsumerLookup
	opts BacklogOptions

	pending, ackPending, redelivered, waiting *prometheus.Desc
	errors                                    *prometheus.CounterVec
	names                                     []string
}

var _ prometheus.Collector = (*BacklogCollector)(nil)

func (c *BacklogCollector) desc(name, help string) *prometheus.Desc {
	fq := prometheus.BuildFQName(Namespace, "jetstream", name)
	c.names = append(c.names, fq)
	return prometheus.NewDesc(fq, help, []string{"kind"}, nil)
}

// NewBacklogCollector returns a collector reading consumer info through js.
// ctx is the process's lifetime: scrapes after it ends report nothing.
func NewBacklogCollector(ctx context.Context, js ConsumerLookup, opts BacklogOptions) *BacklogCollector {
	c := newBacklogCollector(opts)
	c.ctx, c.js = ctx, js
	return c
}

func newBacklogCollector(opts BacklogOptions) *BacklogCollector {
	if opts.Stream == "" {
		opts.Stream = messages.StreamTasks
	}
	if opts.Kinds == nil {
		opts.Kinds = messages.Kinds
	}
	if opts.ConsumerName == nil {
		opts.ConsumerName = topology.TaskConsumer
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultBacklogTimeout
	}
	c := &BacklogCollector{opts: opts}
	c.pending = c.desc("consumer_pending_messages",
		"Tasks of a kind waiting in JetStream for a worker (consumer NumPending): the backlog.")
	c.ackPending = c.desc("consumer_ack_pending_messages",
		"Tasks of a kind delivered to a worker and not yet acknowledged (consumer NumAckPending): in flight fleet-wide.")
	c.redelivered = c.desc("consumer_redelivered_messages",
		"In-flight tasks of a kind delivered more than once (consumer NumRedelivered).")
	c.waiting = c.desc("consumer_waiting_pulls",
		"Pull requests of workers waiting for tasks of a kind (consumer NumWaiting).")
	c.errors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: Namespace, Subsystem: "jetstream", Name: "consumer_info_errors_total",
		Help: "Scrapes in which a task consumer's info could not be read.",
	}, []string{"kind"})
	c.names = append(c.names, prometheus.BuildFQName(Namespace, "jetstream", "consumer_info_errors_total"))
	return c
}

// backlogNames lists the series the collector exports, for Names.
func backlogNames() []string {
	return newBacklogCollector(BacklogOptions{}).names
}

// Describe implements prometheus.Collector.
func (c *BacklogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.ackPending
	ch <- c.redelivered
	ch <- c.waiting
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector. The consumers are read in
// parallel under one deadline, so a scrape costs one round trip, not one per
// kind.
func (c *BacklogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
	defer cancel()
	infos := make([]*jetstream.ConsumerInfo, len(c.opts.Kinds))
	var wg sync.WaitGroup
	for i, kind := range c.opts.Kinds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cons, err := c.js.Consumer(ctx, c.opts.Stream, c.opts.ConsumerName(kind))
			if err != nil {
				return
			}
			infos[i] = cons.CachedInfo()
		}()
	}
	wg.Wait()
	for i, kind := range c.opts.Kinds {
		info := infos[i]
		k := string(kind)
		if info == nil {
			c.errors.WithLabelValues(k).Inc()
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(info.NumPending), k)
		ch <- prometheus.MustNewConstMetric(c.ackPending, prometheus.GaugeValue, float64(info.NumAckPending), k)
		ch <- prometheus.MustNewConstMetric(c.redelivered, prometheus.GaugeValue, float64(info.NumRedelivered), k)
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(info.NumWaiting), k)
	}
	c.errors.Collect(ch)
}
