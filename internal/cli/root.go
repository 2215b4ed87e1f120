package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	iofs "io/fs"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/quiesce/quiesce/internal/config"
	"github.com/quiesce/quiesce/messages"
	"github.com/quiesce/quiesce/observability"
	"github.com/quiesce/quiesce/topology"
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
	// flags are the persistent flags, to tell a flag given from its default.
	flags       *pflag.FlagSet
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
	g.flags = pf
	// Every command takes its NATS settings from the same places, in this
	// order: the flag, the environment (the flag's default), the
	// configuration file, the built-in default.
	pf.StringVarP(&g.configPath, "config", "c", envOr(configEnv, defaultConfigPath), "configuration file (or $"+configEnv+")")
	pf.StringVar(&g.natsURL, "nats", os.Getenv("NATS_URL"), "NATS server URL (default: $NATS_URL, else the config file's nats.url, else "+nats.DefaultURL+")")
	pf.StringVar(&g.creds, "creds", os.Getenv("NATS_CREDS"), "NATS credentials file (default: $NATS_CREDS, else the config file's nats.creds_file)")
	pf.StringVar(&g.logLevel, "log-level", os.Getenv(observability.LogLevelEnv), "log level: debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "", "log format: json or console (default: console on a terminal)")

	root.AddCommand(
		roleCmd(g, "planner", "Plan submitted jobs and publish their first tasks", []string{"planner"}),
		roleCmd(g, "coordinator", "Drive jobs through their phases", []string{"coordinator"}),
		roleCmd(g, "worker", "Execute flush, snapshot, clear, await and retention tasks", []string{"worker"}),
		roleCmd(g, "all", "Run every role in one process", []string{"planner", "coordinator", "worker"}),
		agentCmd(g),
		submitCmd(g), statusCmd(g), watchCmd(g), jobsCmd(g), backupsCmd(g), cancelCmd(g), retentionCmd(g),
		preflightCmd(g), schedulesCmd(g), topologyCmd(g), demoCmd(g), nodetoolCmd(g), drillCmd(g), drillsCmd(g), restoreCmd(g),
	)
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

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func (g *globals) logger() (zerolog.Logger, error) {
	return observability.NewLogger(g.stderr, g.logLevel, g.logFormat)
}

// Where the configuration file is when no flag names it.
const (
	configEnv         = "QUIESCE_CONFIG"
	defaultConfigPath = "/etc/quiesce/quiesce.yaml"
)

// loadConfig reads the configuration file; it must exist.
func (g *globals) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(g.configPath)
	if err != nil {
		return nil, withCode(ExitRejected, fmt.Errorf("config: %w", err))
	}
	return cfg, nil
}

// natsConfig reads the configuration file for a command that needs only its
// NATS settings. A file named by --config or $QUIESCE_CONFIG must exist; at
// the default path a missing file means there is none (an operator's
// machine often has none), and nil is returned.
func (g *globals) natsConfig() (*config.Config, error) {
	named := g.flags.Changed("config") || os.Getenv(configEnv) != ""
	if !named {
		if _, err := os.Stat(g.configPath); errors.Is(err, iofs.ErrNotExist) {
			return nil, nil
		}
	}
	return g.loadConfig()
}

// url is the NATS URL: the flag or $NATS_URL, else the configuration's,
// else the default.
func (g *globals) url(cfg *config.Config) string {
	if g.natsURL != "" {
		return g.natsURL
	}
	if cfg != nil && cfg.NATS.URL != "" {
		return cfg.NATS.URL
	}
	return nats.DefaultURL
}

// dial connects for a command that needs nothing from the configuration file
// but its NATS settings.
func (g *globals) dial(name string) (*nats.Conn, jetstream.JetStream, error) {
	cfg, err := g.natsConfig()
	if err != nil {
		return nil, nil, err
	}
	return g.connect(cfg, name)
}

// connect opens a NATS connection with credentials and TLS from the flags
// or the configuration.
func (g *globals) connect(cfg *config.Config, name string, extra ...nats.Option) (*nats.Conn, jetstream.JetStream, error) {
	opts := []nats.Option{nats.Name("quiesce " + name), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second)}
	opts = append(opts, extra...)
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
		o.AckWait = time.Duration(cfg.NATS.AckWait)
		if cfg.NATS.MaxDeliver > 0 {
			o.MaxDeliver = map[messages.Kind]int{}
			for _, k := range messages.Kinds {
				o.MaxDeliver[k] = cfg.NATS.MaxDeliver
			}
		}
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
func (g *globals) bind(ctx context.Context, name string) (*nats.Conn, jetstream.JetStream, *topology.Handles, error) {
	nc, js, err := g.dial(name)
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
