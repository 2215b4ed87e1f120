package ebs

import (
	"strings"

	"github.com/quiesce/quiesce/pace"
)

// Operations are the EC2 API operations quiesce calls, each paced by a
// budget of its own per account and region (EC2 throttles each API on its
// own), and the op label of the errors the driver and the discoverer
// report, which a process's metrics start at zero.
var Operations = []string{
	"CreateSnapshot", "CreateSnapshots", "DeleteSnapshot", "CopySnapshot",
	"DescribeSnapshots", "DescribeInstances", "DescribeVolumes",
	"CreateVolume", "AttachVolume", "DetachVolume", "DeleteVolume",
}

// AWS's default request budgets, per account, region and API: 5 calls a
// second with a bucket of 100 for the snapshot and volume calls, 20 a second
// with a bucket of 100 for the describes. An account whose limits were
// raised says so in the configuration (ec2.limits).
var (
	defaultMutating = pace.Limit{Rate: 5, Burst: 100}
	defaultDescribe = pace.Limit{Rate: 20, Burst: 100}
)

// DefaultLimit is AWS's default budget of an EC2 operation: Describe*
// calls share the non-mutating defaults, every other call the mutating ones.
func DefaultLimit(op string) pace.Limit {
	if strings.HasPrefix(op, "Describe") {
		return defaultDescribe
	}
	return defaultMutating
}
