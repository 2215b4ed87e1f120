package observability

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server timeouts. A scrape is small; the limits stop a slow client from
// holding a connection open forever.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 30 * time.Second
	shutdownTimeout   = 5 * time.Second
)

// Handler serves /metrics from g, /healthz (the process is alive: always
// 200) and /readyz (200 when ready returns nil, 503 with the error otherwise;
// a nil ready is always ready). Liveness deliberately ignores NATS: a process
// that lost its connection is restarted by nothing but the orchestrator
// taking it out of rotation, and the NATS client reconnects by itself.
// Each of details adds a line to /readyz's answer, ready or not (how the
// fleet's configurations agree, say: ConfigDrift.Detail).
func Handler(g prometheus.Gatherer, ready func() error, details ...func() string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
		// A scrape that takes longer than this is abandoned rather than
		// piling up behind a slow collector.
		Timeout: 10 * time.Second,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ready != nil {
			if err := ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintln(w, "not ready:", Redact(err.Error()))
				writeDetails(w, details)
				return
			}
		}
		_, _ = fmt.Fprintln(w, "ready")
		writeDetails(w, details)
	})
	return mux
}

func writeDetails(w http.ResponseWriter, details []func() string) {
	for _, d := range details {
		if line := d(); line != "" {
			_, _ = fmt.Fprintln(w, Redact(line))
		}
	}
}

// Serve listens on addr (":9464", "127.0.0.1:0") and serves Handler until ctx
// ends, then shuts down gracefully. It returns nil after a shutdown caused by
// ctx, or the error that stopped it.
func Serve(ctx context.Context, addr string, g prometheus.Gatherer, ready func() error, details ...func() string) error {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics listener: %w", err)
	}
	return ServeListener(ctx, ln, g, ready, details...)
}

// ServeListener is Serve on a listener the caller opened (tests use a free
// loopback port). It closes ln.
func ServeListener(ctx context.Context, ln net.Listener, g prometheus.Gatherer, ready func() error, details ...func() string) error {
	srv := &http.Server{
		Handler:           Handler(g, ready, details...),
		ReadHeaderTimeout: readHeaderTimeout,
		WriteTimeout:      writeTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}
