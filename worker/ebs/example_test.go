package ebs_test

import (
	"fmt"

	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/ebs"
)

// An instance's Name tag becomes a node name that is safe in subjects, task
// IDs and remote commands.
func ExampleNodeName() {
	fmt.Println(ebs.NodeName("prod/cassandra 1"))
	fmt.Println(ebs.NodeName("$(reboot)"))
	// Output:
	// prod-cassandra-1
	// reboot
}

// Summarize turns a job's snapshots, as Find returns them, into progress; an
// error state is a task failure carrying EC2's own message.
func ExampleSummarize() {
	p := ebs.Summarize([]worker.Snapshot{
		{ID: "snap-1", VolumeID: "vol-1", State: worker.StateCompleted},
		{ID: "snap-2", VolumeID: "vol-2", State: worker.StatePending},
		{ID: "snap-3", VolumeID: "vol-3", State: worker.StateError, StateMessage: "The KMS key is disabled"},
	})
	fmt.Println(p.Total, p.Completed, p.Pending, p.Errored, p.Done())
	fmt.Println(p.Err())
	// Output:
	// 3 1 1 1 false
	// ec2 DescribeSnapshots: snapshot snap-3 of volume vol-3: The KMS key is disabled
}
