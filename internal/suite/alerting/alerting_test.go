//go:build prometheus

package alerting

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"
	gossh "golang.org/x/crypto/ssh"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/simnode"
	"github.com/quiesce/quiesce/internal/testkit/mototest"
	"github.com/quiesce/quiesce/internal/testkit/sshtest"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

const region = "us-east-1"

// simNodes creates n simulated Cassandra nodes with vols data volumes each,
// reached by the local executor through the test binary as nodetool, and
// returns them as a static inventory. Volume IDs are given by volumeID.
func simNodes(t *testing.T, n, vols int, volumeID func(node, vol int) string) []config.Node {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	dir := t.TempDir()
	var out []config.Node
	for i := range n {
		name := fmt.Sprintf("node-%d", i+1)
		root := filepath.Join(dir, name)
		var dataDirs []string
		var volumes []config.Volume
		for v := range vols {
			p := filepath.Join(dir, "volumes", fmt.Sprintf("%s-data%d", name, v+1))
			dataDirs = append(dataDirs, p)
			volumes = append(volumes, config.Volume{ID: volumeID(i, v), Device: fmt.Sprintf("/dev/xvd%c", 'f'+v), Path: p})
		}
		sn, err := simnode.Create(root, simnode.Options{Name: name, DataDirs: dataDirs, Keyspaces: map[string][]string{"shop": {"orders"}}})
		require.NoError(t, err)
		require.NoError(t, sn.Write("shop", "orders", []byte("row-of-"+name)))
		out = append(out, config.Node{Name: name, Address: "127.0.0.1", AZ: region + "a", Volumes: volumes,
			Nodetool: []string{self, "nodetool", "--root", root}})
	}
	return out
}

func fsVolume(cluster string) func(int, int) string {
	return func(n, v int) string { return fmt.Sprintf("vol-%s-%d-%d", cluster, n+1, v+1) }
}

// fsCluster is a cluster of simulated nodes snapshotted by the fs driver.
func fsCluster(t *testing.T, name string, nodes, vols int) config.Cluster {
	return config.Cluster{Name: name, Executor: "local", Snapshotter: "fs", FS: config.FS{Store: t.TempDir()},
		Nodes: simNodes(t, nodes, vols, fsVolume(name)), DefaultPolicy: "nightly"}
}

// ebsCluster is a cluster of simulated nodes whose data volumes are EBS
// volumes of instances in moto, snapshotted through endpoint.
func ebsCluster(t *testing.T, name, motoURL, endpoint string, nodes int) config.Cluster {
	t.Helper()
	ctx := t.Context()
	raw := ec2.New(ec2.Options{
		Region: region, BaseEndpoint: aws.String(motoURL),
		Credentials: credentials.NewStaticCredentialsProvider(mototest.AccessKeyID, mototest.SecretAccessKey, ""),
	})
	imgs, err := raw.DescribeImages(ctx, &ec2.DescribeImagesInput{})
	require.NoError(t, err)
	require.NotEmpty(t, imgs.Images)
	var instances, volumes []string
	for i := range nodes {
		run, err := raw.RunInstances(ctx, &ec2.RunInstancesInput{
			ImageId: imgs.Images[0].ImageId, InstanceType: types.InstanceTypeT3Micro,
			MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
			TagSpecifications: []types.TagSpecification{{ResourceType: types.ResourceTypeInstance, Tags: []types.Tag{
				{Key: aws.String("Name"), Value: aws.String(fmt.Sprintf("%s-%d", name, i+1))},
			}}},
		})
		require.NoError(t, err)
		in := run.Instances[0]
		v, err := raw.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: in.Placement.AvailabilityZone, Size: aws.Int32(10)})
		require.NoError(t, err)
		_, err = raw.AttachVolume(ctx, &ec2.AttachVolumeInput{VolumeId: v.VolumeId, InstanceId: in.InstanceId, Device: aws.String("/dev/sdf")})
		require.NoError(t, err)
		instances = append(instances, aws.ToString(in.InstanceId))
		volumes = append(volumes, aws.ToString(v.VolumeId))
	}
	cl := config.Cluster{Name: name, Region: region, Executor: "local", Snapshotter: "ebs",
		EBS:           config.EBS{Endpoint: endpoint},
		Nodes:         simNodes(t, nodes, 1, func(n, _ int) string { return volumes[n] }),
		DefaultPolicy: "nightly"}
	for i := range cl.Nodes {
		cl.Nodes[i].InstanceID = instances[i]
	}
	return cl
}

// policy is the nightly policy of a cluster, with deadlines that let the
// test's conditions play out.
func policy(cluster string, keep int) config.Policy {
	return config.Policy{Name: "nightly", Cluster: cluster, KeepLast: keep,
		FlushTimeout: config.Duration(time.Minute), SnapshotTimeout: config.Duration(10 * time.Minute),
		FinishTimeout: config.Duration(10 * time.Minute), JobTimeout: config.Duration(20 * time.Minute)}
}

var allRoles = []role{{name: "planner"}, {name: "coordinator"}, {name: "worker", args: []string{"--name", "worker-1"}}}

// Each condition an alert is for, driven in a running fleet, raises that
// alert; Alertmanager delivers it with the rule's labels, the labels that
// say where (cluster, reason, code, op) and the annotations rendered for
// them.
func TestEachConditionRaisesItsAlert(t *testing.T) {
	t.Parallel()
	moto := mototest.Start(t)
	throttled := mototest.NewThrottle(t, moto.URL).Only("CreateSnapshot").Always()
	broken := mototest.NewThrottle(t, moto.URL).SnapshotsInError("Snapshot failed: the volume's storage is unavailable")

	// A node whose host key changed: known_hosts pins another key for its
	// address, so the worker refuses it before anything runs on it.
	keyDir := t.TempDir()
	keyPath, user := sshtest.UserKey(t, keyDir)
	sshd := sshtest.StartSSHD(t, sshtest.SSHDOptions{AuthorizedKeys: []gossh.PublicKey{user.PublicKey()}})
	_, other, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	otherPub, err := gossh.NewPublicKey(other.Public())
	require.NoError(t, err)
	knownHosts := sshtest.WriteKnownHosts(t, keyDir, sshtest.KnownHostsLine(sshd.Addr, otherPub))

	failing := fsCluster(t, "failing", 2, 1)
	// node-2's Cassandra is down: its nodetool cannot connect.
	failing.Nodes[1].Nodetool[len(failing.Nodes[1].Nodetool)-1] = filepath.Join(t.TempDir(), "down")
	stale := fsCluster(t, "stale", 1, 1)
	stale.BackupMaxAge = config.Duration(20 * time.Second)
	untrusted := config.Cluster{Name: "untrusted", Executor: "ssh", Snapshotter: "fs", FS: config.FS{Store: t.TempDir()},
		SSH: config.SSH{User: sshd.User, IdentityFiles: []string{keyPath}, KnownHosts: []string{knownHosts},
			ConnectTimeout: config.Duration(10 * time.Second)},
		Nodes: []config.Node{{Name: "node-1", Address: sshd.Addr, Volumes: []config.Volume{
			{ID: "vol-untrusted-1", Path: filepath.Join(t.TempDir(), "data")}}}},
		DefaultPolicy: "nightly"}
	// A cluster whose scheduled drill fails: its scratch cluster's
	// Cassandra never starts. A restore into that scratch cluster fails
	// for the same reason.
	drilled := fsCluster(t, "drilled", 1, 1)
	drilled.Drill = &config.Drill{Target: "drilled-scratch", Schedule: "@every 2s"}
	scratchData := filepath.Join(t.TempDir(), "data")
	require.NoError(t, os.MkdirAll(scratchData, 0o755))
	scratch := config.Cluster{Name: "drilled-scratch", Executor: "local", Snapshotter: "fs", FS: config.FS{Store: t.TempDir()},
		CassandraService: &config.CassandraService{Start: []string{"false"}, Stop: []string{"true"}, IsRunning: []string{"false"}},
		Nodes: []config.Node{{Name: "scratch-1", Address: "127.0.9.1", Volumes: []config.Volume{{ID: "vol-scratch-1", Path: scratchData}},
			Directories: &config.Directories{Data: []string{scratchData}}}},
		DefaultPolicy: "nightly"}
	cfg := &config.Config{Clusters: []config.Cluster{
		failing, stale, fsCluster(t, "never", 1, 1), untrusted, drilled, scratch,
		ebsCluster(t, "errored", moto.URL, broken.URL, 2),
		// Several volumes, so that throttled attempts keep coming while
		// each call backs off.
		ebsCluster(t, "throttled", moto.URL, throttled.URL, 5),
	}}
	for _, cl := range cfg.Clusters {
		cfg.Policies = append(cfg.Policies, policy(cl.Name, 0))
	}
	f := startFleet(t, cfg, allRoles...)

	jobs := map[string]string{}
	for _, cl := range []string{"failing", "stale", "untrusted", "errored", "throttled", "drilled"} {
		jobs[cl] = f.submit(cl, cl+"-1")
	}
	f.waitJob(jobs["drilled"], messages.PhaseSucceeded)
	restore := f.restore(messages.RestoreRequest{RequestID: "drilled-restore-1", Cluster: "drilled", Backup: messages.Latest,
		Target: messages.TargetNewCluster, TargetCluster: "drilled-scratch", ClusterName: "drilled"})
	require.Equal(t, messages.RestoreFailed, restore.Phase)
	require.Contains(t, restore.Error, "scratch-1")
	f.waitJob(jobs["stale"], messages.PhaseSucceeded)
	failed := f.waitJob(jobs["failing"], messages.PhaseFailed)
	require.Contains(t, failed.Error, "node-2")
	f.waitJob(jobs["untrusted"], messages.PhaseFailed)
	f.waitJob(jobs["errored"], messages.PhaseFailed)

	f.expectAlert("QuiesceJobFailed", map[string]string{"cluster": "failing"})
	f.expectAlert("QuiesceFlushBarrierFailed", map[string]string{"cluster": "failing", "reason": "failed"})
	f.expectAlert("QuiesceSSHTrustFailures", map[string]string{"code": "hostkey"})
	f.expectAlert("QuiesceFlushBarrierFailed", map[string]string{"cluster": "untrusted", "reason": "failed"})
	f.expectAlert("QuiesceEBSSnapshotsInError", map[string]string{"cluster": "errored"})
	f.expectAlert("QuiesceJobFailed", map[string]string{"cluster": "errored"})
	f.expectAlert("QuiesceEC2Throttled", map[string]string{"op": "CreateSnapshot"})
	stalled := f.expectAlert("QuiesceBackupStale", map[string]string{"cluster": "stale"})
	f.expectAlert("QuiesceClusterNeverBackedUp", map[string]string{"cluster": "never"})
	f.expectAlert("QuiesceRestoreFailed", map[string]string{"cluster": "drilled", "target": "new-cluster"})
	f.expectAlert("QuiesceDrillFailed", map[string]string{"cluster": "drilled"})
	require.Positive(t, throttled.Throttled())

	// What must not fire: a cluster that was backed up is not "never backed
	// up", and the backup went stale only after its own 20 s threshold.
	f.never("QuiesceClusterNeverBackedUp", map[string]string{"cluster": "stale"})
	j, err := f.env.Job(t.Context(), jobs["stale"])
	require.NoError(t, err)
	require.GreaterOrEqual(t, stalled.StartsAt.Sub(j.UpdatedAt), 20*time.Second-time.Second,
		"the stale alert started %s after the backup", stalled.StartsAt.Sub(j.UpdatedAt))
}

// Tasks queue with no worker to take them: the backlog alert fires for
// their kind. A task consumer that cannot be read (deleted here) raises
// the unreadable-backlog alert for its kind.
func TestBacklogWithoutWorkers(t *testing.T) {
	t.Parallel()
	cfg := &config.Config{Clusters: []config.Cluster{fsCluster(t, "queued", 3, 1)},
		Policies: []config.Policy{policy("queued", 0)}}
	f := startFleet(t, cfg, role{name: "planner"}, role{name: "coordinator"})
	id := f.submit("queued", "queued-1")
	f.env.WaitFor(t, id, time.Minute, func(j messages.Job) bool { return j.Phase == messages.PhaseFlushing })
	require.NoError(t, f.env.JS.DeleteConsumer(t.Context(), messages.StreamTasks, topology.TaskConsumer(messages.KindRetention)))

	f.expectAlert("QuiesceTaskBacklogWithoutWorkers", map[string]string{"kind": "flush"})
	f.expectAlert("QuiesceBacklogUnreadable", map[string]string{"kind": "retention"})
	j, err := f.env.Job(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, messages.PhaseFlushing, j.Phase, "nothing took the flush tasks")
}

// A healthy fleet (backups of fs and EBS clusters succeeding, retention
// retiring old ones) raises no alert, and every panel of the dashboard
// shows data.
func TestHealthyFleetAlertsNothingAndFillsTheDashboard(t *testing.T) {
	t.Parallel()
	moto := mototest.Start(t)
	cfg := &config.Config{
		Clusters: []config.Cluster{fsCluster(t, "orders", 3, 2), ebsCluster(t, "billing", moto.URL, moto.URL, 2)},
		Policies: []config.Policy{policy("orders", 2), policy("billing", 1)},
	}
	f := startFleet(t, cfg, role{name: "planner"}, role{name: "coordinator"},
		role{name: "worker", args: []string{"--name", "worker-1"}}, role{name: "worker", args: []string{"--name", "worker-2"}})

	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 3 {
			f.waitJob(f.submit("orders", fmt.Sprintf("orders-%d", i+1)), messages.PhaseSucceeded)
		}
	}()
	for i := range 2 {
		f.waitJob(f.submit("billing", fmt.Sprintf("billing-%d", i+1)), messages.PhaseSucceeded)
	}
	<-done
	if t.Failed() {
		return
	}
	backedUp := time.Now()

	checkDashboard(t, f)

	// Every shortened `for` and window has passed since the last backup.
	time.Sleep(time.Until(backedUp.Add(longest + 10*time.Second)))
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.Empty(t, f.firingSinceStart(ctx), "alerts fired on a healthy fleet")
	require.Empty(t, f.am.Received(), "Alertmanager delivered alerts for a healthy fleet")
	alerts, err := f.prom.Alerts(ctx)
	require.NoError(t, err)
	require.Empty(t, alerts, "alerts pending on a healthy fleet")
}
