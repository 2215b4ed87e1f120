package ebs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
)

// Retry defaults. EC2 throttles per account and region with a token bucket
// that refills at a few calls per second, so a throttled call is worth several
// patient attempts: eight attempts with full-jitter exponential backoff from
// 1 s, capped at 20 s, spread over about a minute in the worst case.
const (
	DefaultMaxAttempts    = 8
	DefaultRetryBaseDelay = time.Second
	DefaultMaxBackoff     = 20 * time.Second
	// DefaultRetryQuota is the SDK's own retry token bucket (500 tokens; a
	// throttled retry costs 5, any other retry 14, a first-attempt success
	// refunds 1). See Options.RetryQuota.
	DefaultRetryQuota = int(retry.DefaultRetryRateTokens)
	// DefaultPageSize is the largest page EC2's Describe calls return.
	DefaultPageSize = 1000
)

// Options tune how the driver and the discoverer talk to EC2. The zero value
// is what production uses.
type Options struct {
	// Credentials replaces the SDK's default chain (environment, shared
	// files, SSO, container or instance role). A Config's RoleARN is still
	// assumed on top of it.
	Credentials aws.CredentialsProvider

	// MaxAttempts bounds the SDK's attempts per call, first included.
	MaxAttempts int
	// RetryBaseDelay and MaxBackoff shape the full-jitter exponential backoff
	// between attempts: attempt n waits rand[0, min(MaxBackoff, base*2^(n-1))).
	RetryBaseDelay time.Duration
	MaxBackoff     time.Duration
	// RetryQuota sizes the client-side retry token bucket (0: the SDK's 500).
	// Under sustained throttling the bucket runs dry and calls then fail on
	// their first throttle instead of retrying: a circuit breaker that stops
	// one process from multiplying an account-wide throttle by its
	// concurrency. Such a failure is classified as a delayed retry of the task
	// (code RetryQuotaExceeded), so the queue, not the SDK, spreads the
	// retries out. A negative value removes the bucket (ratelimit.None): every
	// call gets all of MaxAttempts.
	RetryQuota int

	// PageSize is MaxResults for DescribeInstances and DescribeSnapshots
	// (EC2 accepts 5 to 1000).
	PageSize int32

	// STSEndpoint overrides the STS endpoint used to assume a Config's
	// RoleARN (tests point it at moto). The Config's EC2 endpoint override
	// is not reused for STS: in production it may be an EC2 VPC endpoint.
	// Without it the SDK's configuration applies (AWS_ENDPOINT_URL_STS, say).
	STSEndpoint string

	// OnAPIError is called for every failed attempt that EC2 (or STS) answered
	// with an error code, retried or not: op is the API operation, code the
	// EC2 error code. Observability counts throttles with it.
	OnAPIError func(op, code string)
}

func (o Options) maxAttempts() int {
	if o.MaxAttempts > 0 {
		return o.MaxAttempts
	}
	return DefaultMaxAttempts
}

func (o Options) pageSize() int32 {
	switch {
	case o.PageSize <= 0:
		return DefaultPageSize
	case o.PageSize < 5:
		return 5
	case o.PageSize > 1000:
		return 1000
	}
	return o.PageSize
}

// retryer builds the SDK retryer deliberately rather than taking the default
// mode: our attempts, our backoff, and a stated choice about the retry quota.
func (o Options) retryer() aws.Retryer {
	base := o.RetryBaseDelay
	if base <= 0 {
		base = DefaultRetryBaseDelay
	}
	maxBackoff := o.MaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = DefaultMaxBackoff
	}
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = o.maxAttempts()
		so.MaxBackoff = maxBackoff
		so.Backoff = jitterBackoff{base: base, max: maxBackoff}
		switch {
		case o.RetryQuota < 0:
			so.RateLimiter = ratelimit.None
		case o.RetryQuota > 0:
			so.RateLimiter = ratelimit.NewTokenRateLimit(uint(o.RetryQuota))
		}
	})
}

// jitterBackoff is full-jitter exponential backoff. The SDK's own backoff
// fixes a 1 s base for throttles, which would make the throttling tests
// spend tens of seconds asleep; here the base is an option.
type jitterBackoff struct{ base, max time.Duration }

func (b jitterBackoff) BackoffDelay(attempt int, _ error) (time.Duration, error) {
	ceil := b.max
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 32 {
		if d := b.base << (attempt - 1); d > 0 && d < ceil {
			ceil = d
		}
	}
	return time.Duration(rand.Int64N(int64(ceil) + 1)), nil
}

// clients builds and caches one EC2 client per region for one cluster's
// account. A client per region matches EC2's throttling, which is per
// account and region, and gives each region its own retry quota.
type clients struct {
	cfg  Config
	opts Options
	base aws.Config

	mu       sync.Mutex
	byRegion map[string]*ec2.Client
}

func newClients(ctx context.Context, conf Config, opts Options) (*clients, error) {
	load := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithRetryer(opts.retryer),
		awsconfig.WithAPIOptions([]func(*middleware.Stack) error{opts.observeAttempts}),
	}
	if conf.Region != "" {
		load = append(load, awsconfig.WithRegion(conf.Region))
	}
	if opts.Credentials != nil {
		load = append(load, awsconfig.WithCredentialsProvider(opts.Credentials))
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx, load...)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: loading AWS configuration: %w", conf.Cluster, err)
	}
	if cfg.Region == "" {
		return nil, errors.New("cluster " + conf.Cluster + ": no AWS region: set the cluster's region")
	}
	if conf.RoleARN != "" {
		stsClient := sts.NewFromConfig(cfg, func(o *sts.Options) {
			if opts.STSEndpoint != "" {
				o.BaseEndpoint = aws.String(opts.STSEndpoint)
			}
		})
		cfg.Credentials = aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, conf.RoleARN,
			func(o *stscreds.AssumeRoleOptions) {
				// The session name shows in the target account's CloudTrail.
				o.RoleSessionName = "quiesce-" + conf.Cluster
			}))
	}
	return &clients{cfg: conf, opts: opts, base: cfg, byRegion: map[string]*ec2.Client{}}, nil
}

func (c *clients) home() *ec2.Client { return c.region(c.base.Region) }

func (c *clients) region(region string) *ec2.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.byRegion[region]; ok {
		return cl
	}
	cl := ec2.NewFromConfig(c.base, func(o *ec2.Options) {
		o.Region = region
		if c.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.cfg.Endpoint)
		}
	})
	c.byRegion[region] = cl
	return cl
}

// observeAttempts adds a middleware that reports every attempt EC2 answered
// with an error code.
func (o Options) observeAttempts(stack *middleware.Stack) error {
	if o.OnAPIError == nil {
		return nil
	}
	hook := o.OnAPIError
	// Last in the finalize step, so inside the retry loop whatever else the
	// stack holds (CopySnapshot's presigning stack has no Retry to anchor to).
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("quiesceObserveAttempt",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
			middleware.FinalizeOutput, middleware.Metadata, error,
		) {
			out, md, err := next.HandleFinalize(ctx, in)
			var apiErr smithy.APIError
			if err != nil && errors.As(err, &apiErr) {
				hook(awsmiddleware.GetOperationName(ctx), apiErr.ErrorCode())
			}
			return out, md, err
		}), middleware.After)
}
