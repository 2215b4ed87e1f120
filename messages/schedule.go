package messages

import (
	"fmt"
	"strings"
)

// ScheduleExpr turns a configured schedule (a policy's, a drill's) into a
// JetStream message schedule pattern: five-field cron gains a seconds
// field; "@daily", "@every 6h" and six-field cron pass as they are. Any
// other shape is an error naming the shapes it takes.
func ScheduleExpr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "@") {
		return s, nil
	}
	switch len(strings.Fields(s)) {
	case 5:
		return "0 " + s, nil
	case 6:
		return s, nil
	}
	return "", fmt.Errorf("schedule %q: want five-field cron (\"0 2 * * *\"), six-field cron, @daily or @every <duration>", s)
}
