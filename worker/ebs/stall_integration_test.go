//go:build integration

package ebs_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"sigs.k8s.io/yaml"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/testkit/mototest"
	"github.com/quiesce/quiesce/internal/testkit/proc"
	"github.com/quiesce/quiesce/internal/testkit/testenv"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/topology"
)

// lookupHold is an EC2 proxy that holds the answer to one look-up of a
// task's snapshots (DescribeSnapshots filtered by the task tag) until the
// test releases it: the answer is computed when the request arrives, so the
// worker that gets it late sees the world as it was then.
type lookupHold struct {
	URL string

	proxy   *httputil.ReverseProxy
	mu      sync.Mutex
	lookups int
	holdNth int
	held    chan struct{}
	release chan struct{}
}

func newLookupHold(t *testing.T, target string, holdNth int) *lookupHold {
	u, err := url.Parse(target)
	require.NoError(t, err)
	h := &lookupHold{proxy: httputil.NewSingleHostReverseProxy(u), holdNth: holdNth,
		held: make(chan struct{}), release: make(chan struct{})}
	h.proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Header.Get("X-Test-Hold") == "1" {
			close(h.held)
			<-h.release
		}
		return nil
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(h.let)
	h.URL = srv.URL
	return h
}

func (h *lookupHold) let() {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.release:
	default:
		close(h.release)
	}
}

func (h *lookupHold) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	if form.Get("Action") == "DescribeSnapshots" {
		for k, v := range form {
			if strings.HasSuffix(k, ".Name") && len(v) > 0 && v[0] == "tag:"+messages.TagTask {
				h.mu.Lock()
				h.lookups++
				if h.lookups == h.holdNth {
					r.Header.Set("X-Test-Hold", "1")
				}
				h.mu.Unlock()
			}
		}
	}
	h.proxy.ServeHTTP(w, r)
}

// A real worker process frozen with SIGSTOP between looking for its task's
// snapshot and creating it, past the ack wait, makes no second snapshot:
// its task goes to another worker process, which takes the snapshot; when
// the frozen one continues, its lease has lapsed and it creates nothing.
// EC2 takes no idempotency token, so nothing else would stop it.
func TestSIGSTOPPastAckWaitMakesNoSecondSnapshot(t *testing.T) {
	const ackWait = 2 * time.Second
	moto := mototest.Start(t)
	ctx := t.Context()
	raw := ec2.New(ec2.Options{
		Region: jobRegion, BaseEndpoint: aws.String(moto.URL),
		Credentials: credentials.NewStaticCredentialsProvider(mototest.AccessKeyID, mototest.SecretAccessKey, ""),
	})
	vol, err := raw.CreateVolume(ctx, &ec2.CreateVolumeInput{AvailabilityZone: aws.String(jobRegion + "a"), Size: aws.Int32(10)})
	require.NoError(t, err)
	volID := aws.ToString(vol.VolumeId)

	env := testenv.New(t, topology.Options{AckWait: ackWait})
	dir := t.TempDir()
	bin := proc.Build(t, dir, proc.QuiescePkg)

	// Worker A's look-up of the task's snapshots (the task's only one; the
	// driver does not look again) is held; worker B talks to EC2 directly.
	hold := newLookupHold(t, moto.URL, 1)
	worker := func(name, endpoint string) *proc.Process {
		cfg := config.Config{
			NATS: config.NATS{AckWait: config.Duration(ackWait)},
			Clusters: []config.Cluster{{Name: "c1", Region: jobRegion, Executor: "local", Snapshotter: "ebs",
				EBS:   config.EBS{Endpoint: endpoint},
				Nodes: []config.Node{{Name: "n1", Volumes: []config.Volume{{ID: volID}}}}}},
		}
		require.NoError(t, cfg.Validate())
		data, err := yaml.Marshal(cfg)
		require.NoError(t, err)
		path := filepath.Join(dir, name+".yaml")
		require.NoError(t, os.WriteFile(path, data, 0o644))
		ports, err := proc.FreePorts(1)
		require.NoError(t, err)
		addr := "127.0.0.1:" + strconv.Itoa(ports[0])
		p := proc.Start(t, proc.Spec{Name: name, Log: filepath.Join(dir, name+".log"), Argv: []string{bin, "worker",
			"--config", path, "--nats", env.URL, "--kinds", "snapshot", "--name", name, "--metrics-addr", addr,
			"--log-format", "json"}})
		require.NoError(t, testenv.Eventually(60*time.Second, func() bool {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}), "%s ready:\n%s", name, p.Tail(4096))
		return p
	}
	a := worker("a", hold.URL)

	events, err := env.JS.OrderedConsumer(ctx, messages.StreamEvents, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{messages.SubjectTaskEventsAll}})
	require.NoError(t, err)
	const job = "c1-0000000000aa"
	task := messages.Task{Schema: messages.TaskSchema, ID: messages.TaskID(job, messages.KindSnapshot, volID),
		Kind: messages.KindSnapshot, JobID: job, Cluster: "c1", Target: volID,
		Node: &messages.Node{Name: "n1"}, Volumes: []messages.Volume{{ID: volID}},
		SnapshotTags: map[string]string{messages.TagJob: job, messages.TagCluster: "c1", messages.TagNode: "n1"}}
	data, err := json.Marshal(task)
	require.NoError(t, err)
	_, err = env.JS.Publish(ctx, messages.SubjectTask(messages.KindSnapshot, "c1"), data)
	require.NoError(t, err)

	select {
	case <-hold.held:
	case <-time.After(60 * time.Second):
		t.Fatalf("worker a never looked the snapshot up:\n%s", a.Tail(4096))
	}
	require.NoError(t, a.Stop())
	hold.let() // the answer (no snapshot yet) waits in a's socket

	b := worker("b", moto.URL)
	var res messages.TaskResult
	require.NoError(t, testenv.Eventually(60*time.Second, func() bool {
		m, err := events.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return false
		}
		return json.Unmarshal(m.Data(), &res) == nil && res.TaskID == task.ID
	}), "no result from b:\n%s", b.Tail(4096))
	require.Equal(t, messages.OutcomeSucceeded, res.Outcome, "error: %s", res.Error)
	require.Equal(t, "b", res.Worker)

	require.NoError(t, a.Cont())
	count := func() int {
		snaps, err := raw.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{Filters: []types.Filter{
			{Name: aws.String("tag:" + messages.TagTask), Values: []string{task.ID}}}})
		require.NoError(t, err)
		return len(snaps.Snapshots)
	}
	// Until a gives up, or makes the second snapshot it must not.
	_ = testenv.Eventually(60*time.Second, func() bool {
		return strings.Contains(a.Tail(1<<20), "task lease lost") || count() > 1
	})
	require.Equal(t, 1, count(), "snapshots of the volume for the task")
	require.Contains(t, a.Tail(1<<20), "task lease lost", "worker a, continued, gave the task up")
}
