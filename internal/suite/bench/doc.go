// Package bench measures the orchestrator on an embedded JetStream server,
// next to raw JetStream on the same server: orchestrated tasks per second,
// barrier release latency, flush spread across a large fleet, and the cost
// of planning a large cluster. Run it with `make bench`; docs/benchmarks.md
// records the figures.
package bench
