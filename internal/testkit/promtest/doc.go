// Package promtest runs the real Prometheus and Alertmanager (the Debian
// packages prometheus and prometheus-alertmanager) for tests: a Prometheus
// scraping given targets on loopback with short scrape and evaluation
// intervals and given rule files, an Alertmanager whose one receiver is a
// webhook served by the test, query helpers over Prometheus' HTTP API, and
// RewriteRules, which puts a rule file's durations (`for`, range windows) on
// a test's time scale without touching anything else.
//
// It is a test kit: only tests import it.
package promtest
