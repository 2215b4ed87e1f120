package ebs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
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

	"github.com/quiesce/quiesce/pace"
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

	// DeviceLinks is the directory where the nodes' udev links NVMe devices
	// by serial (default /dev/disk/by-id): where a node's restore looks for
	// a volume attached for it.
	DeviceLinks string

	// Pacer, when set, paces every attempt of every EC2 call by the budget of
	// its account, region and operation that the fleet shares (package
	// pace), and is told of every RequestLimitExceeded. Without it calls
	// are paced only by the SDK's retries.
	Pacer *pace.Pacer
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

// clients builds and caches the EC2 clients of one cluster: one per
// location (region, role and account), since EC2 throttles per account and
// region, and the SDK's retry quota is then per location too.
type clients struct {
	cfg  Config
	opts Options
	base aws.Config

	mu    sync.Mutex
	creds map[string]aws.CredentialsProvider // by role ARN
	byLoc map[location]*ec2.Client
}

// location is where a cluster's snapshots of one data centre live: a region
// reached with a role (none: the default credentials) in an account.
type location struct {
	Region  string
	RoleARN string
	// Account names the budget the pacer charges: Config.Account, else the
	// role's account, else DefaultAccount.
	Account string
}

// DefaultAccount stands for the account of the default credentials in pacer
// keys and metric labels, when the configuration names none.
const DefaultAccount = "default"

// accountOf is the account a location's calls are charged to.
func accountOf(account, roleARN string) string {
	if account != "" {
		return account
	}
	// arn:aws:iam::123456789012:role/name
	if parts := strings.Split(roleARN, ":"); len(parts) >= 6 && parts[4] != "" {
		return parts[4]
	}
	return DefaultAccount
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
	return &clients{cfg: conf, opts: opts, base: cfg,
		creds: map[string]aws.CredentialsProvider{}, byLoc: map[location]*ec2.Client{}}, nil
}

// homeLocation is the cluster's own: its region, role and account.
func (c *clients) homeLocation() location {
	return location{Region: c.base.Region, RoleARN: c.cfg.RoleARN, Account: accountOf(c.cfg.Account, c.cfg.RoleARN)}
}

func (c *clients) home() *ec2.Client { return c.client(c.homeLocation()) }

// region is the client for another region with the cluster's own role.
func (c *clients) region(region string) *ec2.Client {
	l := c.homeLocation()
	l.Region = region
	return c.client(l)
}

// credentials returns the provider of a role (assumed through STS with the
// default credentials), or the default credentials for none.
func (c *clients) credentials(roleARN string) aws.CredentialsProvider {
	if roleARN == "" {
		return c.base.Credentials
	}
	if p, ok := c.creds[roleARN]; ok {
		return p
	}
	stsClient := sts.NewFromConfig(c.base, func(o *sts.Options) {
		if c.opts.STSEndpoint != "" {
			o.BaseEndpoint = aws.String(c.opts.STSEndpoint)
		}
	})
	p := aws.NewCredentialsCache(stscreds.NewAssumeRoleProvider(stsClient, roleARN,
		func(o *stscreds.AssumeRoleOptions) {
			// The session name shows in the target account's CloudTrail.
			o.RoleSessionName = "quiesce-" + c.cfg.Cluster
		}))
	c.creds[roleARN] = p
	return p
}

func (c *clients) client(l location) *ec2.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.byLoc[l]; ok {
		return cl
	}
	creds := c.credentials(l.RoleARN)
	cl := ec2.NewFromConfig(c.base, func(o *ec2.Options) {
		o.Region = l.Region
		o.Credentials = creds
		if c.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.cfg.Endpoint)
		}
		if c.opts.Pacer != nil {
			o.APIOptions = append(o.APIOptions, paced(c.opts.Pacer, l.Account, l.Region))
		}
	})
	c.byLoc[l] = cl
	return cl
}

// paced adds a step inside the SDK's retry loop that waits for the pacer
// before every attempt of a call (a retried attempt spends EC2's budget like
// the first), and reports a throttled attempt back to it. It sits before
// signing, so a long wait never sends a stale signature.
func paced(p *pace.Pacer, account, region string) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		if _, ok := stack.Finalize.Get("Retry"); !ok {
			// A presigning stack (CopySnapshot's source URL) calls nothing.
			return nil
		}
		return stack.Finalize.Insert(middleware.FinalizeMiddlewareFunc("quiescePace",
			func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
				middleware.FinalizeOutput, middleware.Metadata, error,
			) {
				key := pace.Key{Account: account, Region: region, Op: awsmiddleware.GetOperationName(ctx)}
				if err := p.Wait(ctx, key); err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, &paceError{err: err, canceled: ctx.Err() != nil}
				}
				out, md, err := next.HandleFinalize(ctx, in)
				if apiCode(err) == CodeRequestLimitExceeded {
					// The error that matters is the call's; a failure to
					// record the throttle shows in the next wait.
					_ = p.Throttled(ctx, key)
				}
				return out, md, err
			}), "Retry", middleware.After)
	}
}

// paceError is a call that never went: its pacer could not give it a slot,
// or its context ended while it waited for one.
type paceError struct {
	err      error
	canceled bool
}

func (e *paceError) Error() string { return "waiting for the EC2 request budget: " + e.err.Error() }
func (e *paceError) Unwrap() error { return e.err }

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
