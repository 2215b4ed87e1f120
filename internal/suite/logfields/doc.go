// Package logfields holds the test that keeps log fields honest about their
// units: a duration is logged as whole milliseconds under a key ending in
// "_ms" (zerolog's Dur would print 682.66 under a bare key), and a float
// field's key names its unit.
package logfields
