package ebs

import (
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/quiesce/quiesce/worker"
	"github.com/quiesce/quiesce/worker/errclass"
)

// EC2 error codes the driver treats specially, and the client-side codes it
// gives failures that EC2 did not answer.
const (
	CodeRequestLimitExceeded    = "RequestLimitExceeded"
	CodeConcurrentSnapshotLimit = "ConcurrentSnapshotLimitExceeded"
	CodeSnapshotPerVolumeRate   = "SnapshotCreationPerVolumeRateExceeded"
	CodeSnapshotNotFound        = "InvalidSnapshot.NotFound"
	CodeVolumeNotFound          = "InvalidVolume.NotFound"
	// CodeIncorrectState answers a detach of a volume already detaching.
	CodeIncorrectState = "IncorrectState"
	CodeSnapshotInUse  = "InvalidSnapshot.InUse"
	// CodeRetryQuotaExceeded: the SDK's retry token bucket is empty.
	CodeRetryQuotaExceeded = "RetryQuotaExceeded"
	// CodeRequestCanceled: the caller's context ended the call.
	CodeRequestCanceled = "RequestCanceled"
	// CodeTransport: no answer from EC2 (connection, DNS, TLS).
	CodeTransport = "Transport"
	// CodeInvalidRequest: the driver refused a request before calling EC2.
	CodeInvalidRequest = "InvalidRequest"
	// CodeNotManaged: the driver refused a snapshot without the managed tag.
	CodeNotManaged = "NotManaged"
	// CodeIncompleteSet: EC2 returned fewer snapshots than volumes asked for.
	CodeIncompleteSet = "IncompleteSnapshotSet"
	// CodeLeaseLost: the driver created nothing because the task's
	// execution no longer held its lease.
	CodeLeaseLost = "LeaseLost"
	// CodePaceUnavailable: the call never went, its pacer could not reach
	// the fleet's shared request budget (JetStream).
	CodePaceUnavailable = "PaceUnavailable"
)

// SnapshotRateDelay is the least a task waits after EC2 refused a snapshot
// for a per-volume or concurrency limit: EC2 asks for 15 s between snapshot
// calls on one volume, and pending snapshots take longer than that to clear.
const SnapshotRateDelay = 15 * time.Second

// ThrottleDelay is the least a task waits after EC2 kept throttling it:
// either every SDK attempt was throttled, or the SDK's retry quota ran dry
// (then first-attempt successes elsewhere refill the bucket meanwhile).
// Retrying sooner would only spend more of the account's request budget.
const ThrottleDelay = 15 * time.Second

// transientCodes are 4xx answers that a later attempt can succeed on. Every
// other 4xx answer is a validation, authorization or not-found error that
// retrying cannot fix.
var transientCodes = map[string]bool{
	CodeRequestLimitExceeded: true,
	"Throttling":             true,
	"IncorrectState":         true, // a volume in transition
	"RequestExpired":         true, // clock skew; the SDK corrects it
}

// Error is an EC2 failure as the driver reports it: the operation, the EC2
// error code (errclass.Coder, for bounded metric labels) and the cause.
type Error struct {
	Op   string
	code string
	err  error
	// is is the worker sentinel this error stands for, if any.
	is error
}

func (e *Error) Error() string {
	if e.is != nil {
		return fmt.Sprintf("ec2 %s: %v: %v", e.Op, e.is, e.err)
	}
	return fmt.Sprintf("ec2 %s: %v", e.Op, e.err)
}

// Unwrap returns the SDK's error.
func (e *Error) Unwrap() error { return e.err }

// Code returns the EC2 error code, or a client-side code such as
// RetryQuotaExceeded.
func (e *Error) Code() string { return e.code }

// Is matches the worker sentinel (ErrSnapshotInUse) this error stands for.
func (e *Error) Is(target error) bool { return e.is != nil && target == e.is }

var _ errclass.Coder = (*Error)(nil)

// classify wraps an SDK error with its errclass class and EC2 code. It is the
// one place that decides what the worker runtime does with an EC2 failure.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var quota ratelimit.QuotaExceededError
	if errors.As(err, &quota) {
		// Checked before the API error it is joined with: the SDK gave up
		// retrying, not EC2.
		return errclass.RetryAfter(&Error{Op: op, code: CodeRetryQuotaExceeded, err: err}, ThrottleDelay)
	}
	var pe *paceError
	if errors.As(err, &pe) {
		if pe.canceled {
			return &Error{Op: op, code: CodeRequestCanceled, err: err}
		}
		// Transient: retried by the runtime with backoff, like a network
		// failure; the call itself never reached EC2.
		return &Error{Op: op, code: CodePaceUnavailable, err: err}
	}
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) {
		var canceled interface{ CanceledError() bool }
		if errors.As(err, &canceled) && canceled.CanceledError() {
			return &Error{Op: op, code: CodeRequestCanceled, err: err}
		}
		// Network trouble: transient, retried by the runtime with backoff.
		return &Error{Op: op, code: CodeTransport, err: err}
	}
	code := apiErr.ErrorCode()
	e := &Error{Op: op, code: code, err: err}
	switch code {
	case CodeRequestLimitExceeded:
		// The SDK has already spent every attempt on it.
		return errclass.RetryAfter(e, ThrottleDelay)
	case CodeConcurrentSnapshotLimit, CodeSnapshotPerVolumeRate:
		return errclass.RetryAfter(e, SnapshotRateDelay)
	case CodeSnapshotInUse:
		e.is = worker.ErrSnapshotInUse
		return errclass.Permanent(e)
	}
	if transientCodes[code] {
		return e
	}
	if status := httpStatus(err); status >= 400 && status < 500 {
		return errclass.Permanent(e)
	}
	// 5xx and answers without a status: transient.
	return e
}

func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) && re.Response != nil {
		return re.Response.StatusCode
	}
	return 0
}

// apiCode returns the EC2 error code inside err, or "".
func apiCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// permanentf is a permanent failure of the driver's own making.
func permanentf(op, code, format string, a ...any) error {
	return errclass.Permanent(&Error{Op: op, code: code, err: fmt.Errorf(format, a...)})
}
