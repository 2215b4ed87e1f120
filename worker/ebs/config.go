package ebs

// Config is one cluster's EC2 settings.
type Config struct {
	// Cluster names the cluster in errors and in the session name of an
	// assumed role.
	Cluster string
	// Region holds the cluster's volumes; default the SDK's (AWS_REGION).
	Region string
	// Account is the AWS account ID of the cluster's volumes, which names
	// the EC2 request budget its calls are paced by (Options.Pacer). Empty:
	// the account of RoleARN, else DefaultAccount.
	Account string
	// RoleARN is assumed through STS, for a cluster in another account.
	RoleARN string
	// Endpoint overrides the EC2 endpoint (a VPC endpoint; tests point it
	// at moto).
	Endpoint string
	// PerInstance takes one crash-consistent CreateSnapshots set per node
	// instead of one CreateSnapshot per volume.
	PerInstance bool
	// CopyVolumeTags copies each volume's own tags to its snapshot.
	CopyVolumeTags bool
	// CopyRegions receive a copy of every snapshot.
	CopyRegions []string
	// DataCenters place the cluster's Cassandra data centres in AWS regions
	// (and accounts) of their own. A node's volumes are snapshotted where its
	// data centre is (messages.Node.DC); a node of no listed data centre,
	// where the cluster is.
	DataCenters []DataCenter
}

// DataCenter is where one Cassandra data centre of a cluster runs.
type DataCenter struct {
	Name string
	// Region holds the data centre's volumes (default the cluster's).
	Region string
	// Account and RoleARN as the cluster's; empty: the cluster's.
	Account string
	RoleARN string
}

// Discovery selects a cluster's nodes and their data volumes in EC2.
type Discovery struct {
	// InstanceTags selects running instances carrying every tag; at least
	// one is required.
	InstanceTags map[string]string
	// Devices selects data volumes by device name, VolumeTags by tag (both
	// must hold when both are given).
	Devices    []string
	VolumeTags map[string]string
	// IncludeRoot keeps the root volume (left out by default).
	IncludeRoot bool
}
