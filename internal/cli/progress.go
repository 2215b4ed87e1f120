package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/quiesce/quiesce/messages"
)

// progress renders a job's progress: one line rewritten in place on a
// terminal, a line per change of phase or count elsewhere.
type progress struct {
	w     io.Writer
	tty   bool
	last  string
	start time.Time
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		tty = term.IsTerminal(int(f.Fd()))
	}
	return &progress{w: w, tty: tty, start: time.Now()}
}

func (p *progress) line(j messages.Job) string {
	pr := j.Progress
	var b strings.Builder
	fmt.Fprintf(&b, "%-12s flushed %d/%d", j.Phase, pr.Flushed, pr.Nodes)
	if pr.FlushFailed > 0 {
		fmt.Fprintf(&b, " (%d failed)", pr.FlushFailed)
	}
	fmt.Fprintf(&b, "  snapshots %s", snapshotsText(j))
	fmt.Fprintf(&b, "  cleared %s", clearedText(j))
	if c := cleanupText(j); c != "" {
		fmt.Fprintf(&b, "  clean-up %s", c)
	}
	if len(j.Retrying) > 0 {
		r := j.Retrying[0]
		fmt.Fprintf(&b, "  retrying %s (attempt %d)", taskName(j.ID, r), r.Attempt)
		if len(j.Retrying) > 1 {
			fmt.Fprintf(&b, " and %d more", len(j.Retrying)-1)
		}
	}
	return b.String()
}

func (p *progress) update(j messages.Job) {
	l := p.line(j)
	if l == p.last {
		return
	}
	p.last = l
	el := time.Since(p.start).Round(10 * time.Millisecond)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K[%7s] %s", el, l)
		return
	}
	fmt.Fprintf(p.w, "[%7s] %s\n", el, l)
}

func (p *progress) done() {
	if p.tty && p.last != "" {
		fmt.Fprintln(p.w)
	}
}
