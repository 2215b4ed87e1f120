package promtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

// Shrink maps a duration of a rule file onto a test's time scale: divided by
// Factor, then held between Min and Max, in whole seconds, and never longer
// than it was. It keeps the order of durations (a longer window never
// becomes shorter than a shorter one), which is what the rules' meaning
// rests on: a 1h window still covers a 10m one.
type Shrink struct {
	Factor   float64
	Min, Max time.Duration
}

// Duration applies the mapping to d.
func (s Shrink) Duration(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	out := d
	if s.Factor > 1 {
		out = time.Duration(float64(d) / s.Factor)
	}
	if s.Min > 0 && out < s.Min {
		out = s.Min
	}
	if s.Max > 0 && out > s.Max {
		out = s.Max
	}
	if out > d {
		out = d
	}
	if r := out.Round(time.Second); r > 0 {
		out = r
	}
	return out
}

var promql = parser.NewParser(parser.Options{})

// RewriteRules returns the Prometheus rule file data with every duration
// passed through f: each rule's `for` and `keep_firing_for`, each group's
// `interval`, and every range of a range selector (`x[10m]`) or subquery
// (`x[1h:1m]`, range and step) in each expression. Everything else (names,
// labels, annotations, thresholds, the shape of each expression) is left as
// it is; expressions are printed back in Prometheus' canonical form, and
// comments are dropped. A rule file Prometheus could not load, or a range
// given as an expression rather than a duration, is an error naming the
// group and rule.
func RewriteRules(data []byte, f func(time.Duration) time.Duration) ([]byte, error) {
	var doc map[string]any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("rule file: %w", err)
	}
	groups, ok := doc["groups"].([]any)
	if !ok {
		return nil, errors.New("rule file: no list of groups")
	}
	for gi, g := range groups {
		group, ok := g.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("rule file: group %d is not a mapping", gi)
		}
		gname, _ := group["name"].(string)
		if err := rewriteDuration(group, "interval", f); err != nil {
			return nil, fmt.Errorf("group %q: %w", gname, err)
		}
		rules, ok := group["rules"].([]any)
		if !ok {
			return nil, fmt.Errorf("group %q: no list of rules", gname)
		}
		for ri, r := range rules {
			rule, ok := r.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("group %q: rule %d is not a mapping", gname, ri)
			}
			name, _ := rule["alert"].(string)
			if name == "" {
				name, _ = rule["record"].(string)
			}
			where := fmt.Sprintf("group %q, rule %d (%s)", gname, ri, name)
			for _, key := range []string{"for", "keep_firing_for"} {
				if err := rewriteDuration(rule, key, f); err != nil {
					return nil, fmt.Errorf("%s: %w", where, err)
				}
			}
			expr, ok := rule["expr"].(string)
			if !ok {
				return nil, fmt.Errorf("%s: no expr", where)
			}
			out, err := RewriteExpr(expr, f)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			rule["expr"] = out
		}
	}
	// Through JSON first so that map keys come out in a stable order.
	j, err := json.Marshal(doc)
	if err != nil {
		return nil, err
	}
	return yaml.JSONToYAML(j)
}

func rewriteDuration(m map[string]any, key string, f func(time.Duration) time.Duration) error {
	v, ok := m[key]
	if !ok {
		return nil
	}
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("%s: %v is not a duration", key, v)
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s: %w", key, err)
	}
	m[key] = model.Duration(f(time.Duration(d))).String()
	return nil
}

// RewriteExpr returns the PromQL expression with the range of every range
// selector and subquery (and the step of every subquery) passed through f,
// printed in Prometheus' canonical form.
func RewriteExpr(expr string, f func(time.Duration) time.Duration) (string, error) {
	e, err := promql.ParseExpr(expr)
	if err != nil {
		return "", fmt.Errorf("expr: %w", err)
	}
	var bad error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		switch n := n.(type) {
		case *parser.MatrixSelector:
			if n.RangeExpr != nil {
				bad = fmt.Errorf("range %s is an expression, not a duration", n.RangeExpr)
				return bad
			}
			n.Range = f(n.Range)
		case *parser.SubqueryExpr:
			if n.RangeExpr != nil || n.StepExpr != nil {
				bad = fmt.Errorf("subquery %s: range or step is an expression, not a duration", n.ShortString())
				return bad
			}
			n.Range = f(n.Range)
			if n.Step != 0 {
				n.Step = f(n.Step)
			}
		}
		return nil
	})
	if bad != nil {
		return "", bad
	}
	return e.String(), nil
}
