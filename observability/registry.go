package observability

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// NewRegistry returns a registry for one process, holding the Go runtime and
// process collectors. A private registry rather than the global default keeps
// tests independent and the exposition limited to what quiesce registers.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// Names lists every series name a quiesce process can export, as it appears
// in the exposition and so in PromQL: counters with their _total suffix,
// histograms as their _bucket, _sum and _count series, plus the Go runtime
// and process metrics of NewRegistry. The dashboard and alert tests check
// every metric they use against it, so renaming a metric breaks a test
// instead of a dashboard.
func Names() []string {
	reg := NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		// A fresh registry cannot already hold these collectors.
		panic(err)
	}
	seen := map[string]bool{}
	for _, n := range m.names {
		seen[n] = true
	}
	for _, n := range backlogNames() {
		seen[n] = true
	}
	for _, n := range driftNames() {
		seen[n] = true
	}
	// The runtime and process collectors always export their series, so a
	// gather lists them without a hard-coded copy.
	mfs, err := reg.Gather()
	if err == nil {
		for _, mf := range mfs {
			name := mf.GetName()
			switch mf.GetType().String() {
			case "HISTOGRAM":
				seen[name+"_bucket"], seen[name+"_sum"], seen[name+"_count"] = true, true, true
			case "SUMMARY":
				seen[name] = true
				seen[name+"_sum"], seen[name+"_count"] = true, true
			default:
				seen[name] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
