package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/internal/topology"
	"github.com/quiesce/quiesce/observability"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitFailed   = 1 // the job failed or was cancelled, or a check failed
	ExitRejected = 2 // bad input: the request or the command line was refused
	ExitError    = 3 // quiesce itself could not do its part (connection, config)
)

// exitError carries an exit code through cobra.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code, err}
}

type globals struct {
	configPath  string
	natsURL     string
	creds       string
	logLevel    string
	logFormat   string
	metricsAddr string
	stdout      io.Writer
	stderr      io.Writer
}

// Main runs the command line and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "quiesce",
		Short: "Application-consistent EBS backups of Cassandra clusters",
		Long: "quiesce flushes every Cassandra node of a cluster (nodetool snapshot), waits until all\n" +
			"have flushed, then snapshots their volumes, clears the hard links and retires old\n" +
			"backups. Work is carried on NATS JetStream by planner, coordinator and worker roles.",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetArgs(args)
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configPath, "config", "c", envOr("QUIESCE_CONFIG", "/etc/quiesce/quiesce.yaml"), "configuration file")
	pf.StringVar(&g.natsURL, "nats", os.Getenv("NATS_URL"), "NATS server URL (default: the config file's nats.url, else nats://127.0.0.1:4222)")
	pf.StringVar(&g.creds, "creds", os.Getenv("NATS_CREDS"), "NATS credentials file")
	pf.StringVar(&g.logLevel, "log-level", os.Getenv(observability.LogLevelEnv), "log level: debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "", "log format: json or console (default: console on a terminal)")

	root.AddCommand(
		roleCmd(g, "planner", "Plan submitted jobs and publish their first tasks", []string{"planner"}),
		roleCmd(g, "coordinator", "Drive jobs through their phases", []string{"coordinator"}),
		roleCmd(g, "worker", "Execute flush, snapshot, clear, await and retention tasks", []string{"worker"}),
		roleCmd(g, "all", "Run every role in one process", []string{"planner", "coordinator", "worker"}),
		submitCmd(g), statusCmd(g), watchCmd(g), jobsCmd(g), backupsCmd(g), cancelCmd(g), retentionCmd(g),
		topologyCmd(g), demoCmd(g), nodetoolCmd(g),
	)
	for _, c := range extraCommands {
		root.AddCommand(c(g))
	}
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if !errors.Is(err, errSilent) {
		fmt.Fprintln(stderr, "quiesce:", err)
	}
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitRejected
}

// errSilent ends a command whose output already said what went wrong.
var errSilent = errors.New("")

// extraCommands are added by files that need optional drivers.
var extraCommands []func(*globals) *cobra.Command

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (g *globals) logger() (zerolog.Logger, error) {
	return observability.NewLogger(g.stderr, g.logLevel, g.logFormat)
}

func (g *globals) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return nil, withCode(ExitRejected, fmt.Errorf("config: %w", err))
	}
	return cfg, nil
}

func (g *globals) url(cfg *config.Config) string {
	if g.natsURL != "" {
		return g.natsURL
	}
	if cfg != nil && cfg.NATS.URL != "" {
		return cfg.NATS.URL
	}
	return nats.DefaultURL
}

// connect opens a NATS connection with credentials and TLS from the flags
// or the configuration.
func (g *globals) connect(cfg *config.Config, name string) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("quiesce " + name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	creds := g.creds
	if creds == "" && cfg != nil {
		creds = cfg.NATS.CredsFile
	}
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	if cfg != nil && cfg.NATS.CAFile != "" {
		opts = append(opts, nats.RootCAs(cfg.NATS.CAFile))
	}
	if cfg != nil && cfg.NATS.CertFile != "" {
		opts = append(opts, nats.ClientCert(cfg.NATS.CertFile, cfg.NATS.KeyFile))
	}
	url := g.url(cfg)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, nil, withCode(ExitError, fmt.Errorf("connect to NATS at %s: %w", url, err))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, withCode(ExitError, err)
	}
	return nc, js, nil
}

// signalContext ends on SIGINT or SIGTERM.
func signalContext(parent context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(parent, os.Interrupt, syscall.SIGTERM)
}

func topologyOptions(cfg *config.Config) topology.Options {
	o := topology.Options{}
	if cfg != nil {
		o.Replicas = cfg.Replicas()
	}
	return o
}

func topologyCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "topology",
		Short: "Create or update the JetStream streams, buckets and consumers",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withTopology(cmd.Context(), "topology", func(ctx context.Context, cfg *config.Config, _ jetstream.JetStream) error {
				fmt.Fprintf(g.stdout, "topology ready (replicas %d)\n", cfg.Replicas())
				return nil
			})
		},
	}
}

// withTopology loads the configuration, connects, makes sure the topology
// exists, and runs fn within a 30 s bound.
func (g *globals) withTopology(parent context.Context, name string, fn func(context.Context, *config.Config, jetstream.JetStream) error) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	nc, js, err := g.connect(cfg, name)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(parent, 30*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topologyOptions(cfg)); err != nil {
		return withCode(ExitError, err)
	}
	return fn(ctx, cfg, js)
}

// bind connects and opens the topology's buckets, for commands that read
// or change jobs.
func (g *globals) bind(ctx context.Context, cfg *config.Config, name string) (*nats.Conn, jetstream.JetStream, *topology.Handles, error) {
	nc, js, err := g.connect(cfg, name)
	if err != nil {
		return nil, nil, nil, err
	}
	h, err := topology.Bind(ctx, js)
	if err != nil {
		nc.Close()
		return nil, nil, nil, withCode(ExitError, err)
	}
	return nc, js, h, nil
}
