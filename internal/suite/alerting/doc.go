// Package alerting is the operator's view, tested for real: quiesce runs as
// processes (planner, coordinator and workers, each serving /metrics), a real
// Prometheus scrapes every one of them with the alert rules of
// deploy/prometheus/alerts.yml loaded (their durations shortened for the
// test by promtest.RewriteRules), and a real Alertmanager delivers what
// fires to a webhook the test serves. The tests drive quiesce into each
// condition an alert is for and check the alert arrives with its labels and
// annotations; a healthy fleet raises none, and every panel of the Grafana
// dashboard shows data. Its tests carry the prometheus build tag: run them
// with `make test-prometheus`. The restore and drill alerts are tested by
// promtool's rule tests only (deploy/prometheus/alerts_test.yml); their
// conditions are not driven here yet.
package alerting
