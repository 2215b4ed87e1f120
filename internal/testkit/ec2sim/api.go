package ec2sim

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/quiesce/quiesce/internal/testkit/mototest"
	"github.com/quiesce/quiesce/worker/ebs"
)

// apiError is an EC2 error answer.
type apiError struct {
	status        int
	code, message string
}

func errorf(status int, code, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, a...)}
}

func (s *Sim) serve(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		mototest.WriteEC2Error(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	action := r.Form.Get("Action")
	accessKey, region := signedScope(r)
	where := scope{s.account(accessKey), region}
	var body bytes.Buffer
	aerr := s.call(where, action, r.Form, &body)
	if aerr != nil {
		mototest.WriteEC2Error(w, aerr.status, aerr.code, aerr.message)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<%[1]sResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>00000000-0000-0000-0000-000000000000</requestId>%[2]s</%[1]sResponse>`,
		action, body.String())
}

// call answers one request under the simulator's lock: the bucket first,
// as EC2 throttles before it looks at the request.
func (s *Sim) call(where scope, action string, form url.Values, out *bytes.Buffer) *apiError {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	key := Key{Account: where.account, Region: where.region, Op: action}
	if where.region == "" {
		return errorf(http.StatusBadRequest, "AuthFailure", "request not signed for a region")
	}
	ok := s.take(key, now)
	s.calls[key] = append(s.calls[key], Call{At: now, Throttled: !ok})
	if !ok {
		return errorf(http.StatusServiceUnavailable, ebs.CodeRequestLimitExceeded, "Request limit exceeded.")
	}
	var err *apiError
	switch action {
	case "CreateSnapshot":
		err = s.createSnapshot(where, now, form, out)
	case "CreateSnapshots":
		err = s.createSnapshots(where, now, form, out)
	case "DescribeSnapshots":
		err = s.describeSnapshots(where, now, form, out)
	case "DeleteSnapshot":
		err = s.deleteSnapshotCall(where, form, out)
	case "DescribeInstances":
		err = s.describeInstances(where, form, out)
	default:
		err = errorf(http.StatusBadRequest, "InvalidAction", "the simulator does not know %s", action)
	}
	if err != nil && (err.code == ebs.CodeConcurrentSnapshotLimit || err.code == ebs.CodeSnapshotPerVolumeRate) {
		s.refusals[err.code]++
	}
	return err
}

// tagSpec reads TagSpecification.1.Tag.N.Key/Value.
func tagSpec(form url.Values) map[string]string {
	tags := map[string]string{}
	for i := 1; ; i++ {
		k := form.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Key", i))
		if k == "" {
			return tags
		}
		tags[k] = form.Get(fmt.Sprintf("TagSpecification.1.Tag.%d.Value", i))
	}
}

// list reads prefix.1, prefix.2, ...
func list(form url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v := form.Get(prefix + "." + strconv.Itoa(i))
		if v == "" {
			return out
		}
		out = append(out, v)
	}
}

func (s *Sim) createSnapshot(where scope, now time.Time, form url.Values, out *bytes.Buffer) *apiError {
	id := form.Get("VolumeId")
	v, ok := s.volumes[id]
	if !ok || v.where != where {
		return errorf(http.StatusBadRequest, "InvalidVolume.NotFound", "The volume '%s' does not exist.", id)
	}
	if code := s.refuseVolume(v, now); code != "" {
		return errorf(http.StatusBadRequest, code, "volume %s", id)
	}
	v.last = now
	sn := s.addSnapshot(where, id, form.Get("Description"), tagSpec(form), now)
	s.snapshotFields(out, sn, now, "status")
	return nil
}

func (s *Sim) createSnapshots(where scope, now time.Time, form url.Values, out *bytes.Buffer) *apiError {
	id := form.Get("InstanceSpecification.InstanceId")
	in, ok := s.instances[id]
	if !ok || in.where != where {
		return errorf(http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	exclude := list(form, "InstanceSpecification.ExcludeDataVolumeId")
	vols := slices.DeleteFunc(slices.Clone(in.volumes), func(v string) bool { return slices.Contains(exclude, v) })
	if form.Get("InstanceSpecification.ExcludeBootVolume") != "true" {
		vols = append([]string{in.root}, vols...)
	}
	if len(vols) == 0 {
		return errorf(http.StatusBadRequest, "InvalidParameterCombination", "no volume of instance %s to snapshot", id)
	}
	// Every volume of the set must be able to start, or none does.
	for _, vid := range vols {
		if code := s.refuseVolume(s.volumes[vid], now); code != "" {
			return errorf(http.StatusBadRequest, code, "volume %s", vid)
		}
	}
	tags := tagSpec(form)
	out.WriteString("<snapshotSet>")
	for _, vid := range vols {
		s.volumes[vid].last = now
		sn := s.addSnapshot(where, vid, form.Get("Description"), cloneTags(tags), now)
		out.WriteString("<item>")
		s.snapshotFields(out, sn, now, "state")
		out.WriteString("</item>")
	}
	out.WriteString("</snapshotSet>")
	return nil
}

func cloneTags(m map[string]string) map[string]string {
	c := make(map[string]string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func (s *Sim) describeSnapshots(where scope, now time.Time, form url.Values, out *bytes.Buffer) *apiError {
	var ids []string
	if want := list(form, "SnapshotId"); len(want) > 0 {
		for _, id := range want {
			sn, ok := s.snaps[id]
			if !ok || sn.where != where {
				return errorf(http.StatusBadRequest, ebs.CodeSnapshotNotFound, "The snapshot '%s' does not exist.", id)
			}
			ids = append(ids, id)
		}
	} else {
		filter := map[string]string{}
		for i := 1; ; i++ {
			name := form.Get(fmt.Sprintf("Filter.%d.Name", i))
			if name == "" {
				break
			}
			key, ok := strings.CutPrefix(name, "tag:")
			values := list(form, fmt.Sprintf("Filter.%d.Value", i))
			if !ok || len(values) != 1 {
				return errorf(http.StatusBadRequest, "InvalidParameterValue", "the simulator filters by one tag value only, not %s", name)
			}
			filter[key] = values[0]
		}
		ids = s.match(where, filter)
	}
	if token := form.Get("NextToken"); token != "" {
		k, _ := slices.BinarySearch(ids, token)
		for k < len(ids) && ids[k] <= token {
			k++
		}
		ids = ids[k:]
	}
	next := ""
	if n, err := strconv.Atoi(form.Get("MaxResults")); err == nil && n > 0 && len(ids) > n {
		ids = ids[:n]
		next = ids[n-1]
	}
	out.WriteString("<snapshotSet>")
	for _, id := range ids {
		out.WriteString("<item>")
		s.snapshotFields(out, s.snaps[id], now, "status")
		out.WriteString("</item>")
	}
	out.WriteString("</snapshotSet>")
	if next != "" {
		fmt.Fprintf(out, "<nextToken>%s</nextToken>", next)
	}
	return nil
}

func (s *Sim) deleteSnapshotCall(where scope, form url.Values, out *bytes.Buffer) *apiError {
	id := form.Get("SnapshotId")
	sn, ok := s.snaps[id]
	if !ok || sn.where != where {
		return errorf(http.StatusBadRequest, ebs.CodeSnapshotNotFound, "The snapshot '%s' does not exist.", id)
	}
	s.deleteSnapshot(sn)
	out.WriteString("<return>true</return>")
	return nil
}

func (s *Sim) describeInstances(where scope, form url.Values, out *bytes.Buffer) *apiError {
	ids := list(form, "InstanceId")
	if len(ids) == 0 {
		return errorf(http.StatusBadRequest, "InvalidParameterValue", "the simulator describes instances by ID only")
	}
	out.WriteString("<reservationSet>")
	for _, id := range ids {
		in, ok := s.instances[id]
		if !ok || in.where != where {
			return errorf(http.StatusBadRequest, "InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
		}
		fmt.Fprintf(out, "<item><reservationId>r-%s</reservationId><instancesSet><item><instanceId>%s</instanceId>", id, id)
		fmt.Fprintf(out, "<instanceState><code>16</code><name>running</name></instanceState><placement><availabilityZone>%s</availabilityZone></placement>", in.az)
		out.WriteString("<rootDeviceName>/dev/xvda</rootDeviceName><blockDeviceMapping>")
		for _, vid := range append([]string{in.root}, in.volumes...) {
			fmt.Fprintf(out, "<item><deviceName>%s</deviceName><ebs><volumeId>%s</volumeId><status>attached</status></ebs></item>", s.volumes[vid].device, vid)
		}
		out.WriteString("</blockDeviceMapping></item></instancesSet></item>")
	}
	out.WriteString("</reservationSet>")
	return nil
}

// snapshotFields writes a snapshot's fields; CreateSnapshots calls its
// state "state", the other calls "status".
func (s *Sim) snapshotFields(out *bytes.Buffer, sn *snapshot, now time.Time, stateField string) {
	state, progress := s.state(sn, now)
	fmt.Fprintf(out, "<snapshotId>%s</snapshotId><volumeId>%s</volumeId><%s>%s</%s><progress>%s</progress><startTime>%s</startTime><ownerId>%s</ownerId>",
		sn.id, sn.volume, stateField, state, stateField, progress, sn.start.UTC().Format("2006-01-02T15:04:05.000Z"), sn.where.account)
	if sn.desc != "" {
		out.WriteString("<description>")
		_ = xml.EscapeText(out, []byte(sn.desc))
		out.WriteString("</description>")
	}
	out.WriteString("<tagSet>")
	for _, k := range sortedKeys(sn.tags) {
		out.WriteString("<item><key>")
		_ = xml.EscapeText(out, []byte(k))
		out.WriteString("</key><value>")
		_ = xml.EscapeText(out, []byte(sn.tags[k]))
		out.WriteString("</value></item>")
	}
	out.WriteString("</tagSet>")
}
