// Package mototest runs moto's EC2 server (PyPI moto[server]) for tests, and
// a throttling proxy that makes it answer RequestLimitExceeded on demand.
//
// It is a test kit: only tests import it.
package mototest
