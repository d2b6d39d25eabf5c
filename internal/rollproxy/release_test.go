package rollproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// releaseSeries returns the invdeploy_release_info series reg exposes, each
// as "project/release/revision/service=value", sorted.
func releaseSeries(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		if mf.GetName() != "invdeploy_release_info" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			out = append(out, l["project"]+"/"+l["release"]+"/"+l["revision"]+"/"+l["service"]+"="+
				strconv.FormatFloat(m.GetGauge().GetValue(), 'g', -1, 64))
		}
	}
	sort.Strings(out)
	return out
}

// TestReleaseInfoFollowsTheServingBackend: the series names the release the
// current backend runs, only that one, at 1; a refused deploy changes
// nothing; a switch that names no release clears it; a deploy to the current
// target may (re)name it.
func TestReleaseInfoFollowsTheServingBackend(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := New(reg)
	ctx := context.Background()
	v1, v2, v3 := newVersion(t, "v1"), newVersion(t, "v2"), newVersion(t, "v3")
	bad := newVersion(t, "bad")
	bad.healthy.Store(false)
	deploy := func(target string, r Release) error {
		o := fastOpts()
		o.HealthTimeout = 200 * time.Millisecond
		o.Release = r
		_, err := p.Deploy(ctx, target, o)
		return err
	}
	want := func(step string, series ...string) {
		t.Helper()
		got := releaseSeries(t, reg)
		if strings.Join(got, " ") != strings.Join(series, " ") {
			t.Fatalf("%s: invdeploy_release_info %q, want %q", step, got, series)
		}
	}
	want("before any deploy")
	if err := deploy(v1.addr(), Release{Project: "shop", Number: "1", Revision: "aaaa111", Service: "api"}); err != nil {
		t.Fatal(err)
	}
	want("release 1", "shop/1/aaaa111/api=1")
	if err := deploy(v2.addr(), Release{Project: "shop", Number: "2", Revision: "bbbb222", Service: "api"}); err != nil {
		t.Fatal(err)
	}
	want("release 2", "shop/2/bbbb222/api=1")
	if err := deploy(bad.addr(), Release{Project: "shop", Number: "3", Revision: "cccc333", Service: "api"}); err == nil {
		t.Fatal("an unhealthy target was accepted")
	}
	want("refused release 3", "shop/2/bbbb222/api=1")
	if p.Release().Number != "2" {
		t.Fatalf("Release() = %+v", p.Release())
	}
	if err := deploy(v2.addr(), Release{}); err != nil {
		t.Fatal(err)
	}
	want("same target, nothing named", "shop/2/bbbb222/api=1")
	if err := deploy(v3.addr(), Release{}); err != nil {
		t.Fatal(err)
	}
	want("switch naming nothing")
	if err := deploy(v3.addr(), Release{Number: "4"}); err != nil {
		t.Fatal(err)
	}
	want("same target named", "/4//=1")
}

// TestSwitchEventsExistFromTheStart: every switch result is exported at 0
// before the first deploy, so Prometheus sees the first switch as an
// increase (the dashboards' switch marks use increase()).
func TestSwitchEventsExistFromTheStart(t *testing.T) {
	reg := prometheus.NewRegistry()
	New(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var results []string
	for _, mf := range mfs {
		if mf.GetName() == "invdeploy_proxy_switch_events_total" {
			for _, m := range mf.GetMetric() {
				if v := m.GetCounter().GetValue(); v != 0 {
					t.Errorf("%v = %v before any deploy", m.GetLabel(), v)
				}
				results = append(results, m.GetLabel()[0].GetValue())
			}
		}
	}
	sort.Strings(results)
	if strings.Join(results, " ") != "drain_timeout switched unhealthy" {
		t.Fatalf("switch results exported at start: %v", results)
	}
}

func TestReleaseValidate(t *testing.T) {
	good := []Release{
		{},
		{Number: "1"},
		{Project: "invoicing", Number: "12", Revision: "1a2b3c4d5e6f", Service: "api"},
		{Revision: "1a2b3c4d5e6f-dirty"},
		{Revision: "v1.2.3+build.4"},
		{Project: "my_stack.v2", Service: "web-1"},
	}
	for _, r := range good {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	bad := []Release{
		{Number: "0"},
		{Number: "-1"},
		{Number: "+3"},
		{Number: "07"},
		{Number: "seven"},
		{Number: "99999999999"},
		{Revision: "a b"},
		{Revision: "-x"},
		{Revision: strings.Repeat("a", 65)},
		{Revision: "abc\n"},
		{Revision: "caf\xe9"},
		{Project: "Shop/1"},
		{Service: "api\"} 1\nfake"},
		{Service: "_api"},
	}
	for _, r := range bad {
		if err := r.Validate(); err == nil {
			t.Errorf("%+v accepted", r)
		}
	}
}

// TestAdminDeployNamesTheRelease: the admin API takes the release fields,
// refuses bad ones (400, nothing changed), and /target reports them.
func TestAdminDeployNamesTheRelease(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := New(reg)
	admin := httptest.NewServer(p.AdminHandler())
	defer admin.Close()
	v1 := newVersion(t, "v1")
	post := func(body string) int {
		resp, err := http.Post(admin.URL+"/deploy", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(`{"target":"` + v1.addr() + `","health_path":"/readyz","release":"x1"}`); code != http.StatusBadRequest {
		t.Fatalf("bad release number: %d, want 400", code)
	}
	if p.Target() != "" || len(releaseSeries(t, reg)) != 0 {
		t.Fatal("a refused request changed the proxy")
	}
	if code := post(`{"target":"` + v1.addr() + `","health_path":"/readyz","project":"shop","release":"5","revision":"abc123","service":"api"}`); code != http.StatusOK {
		t.Fatalf("deploy: %d", code)
	}
	resp, err := http.Get(admin.URL + "/target")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got["target"] != v1.addr() || got["project"] != "shop" || got["release"] != "5" || got["revision"] != "abc123" || got["service"] != "api" {
		t.Fatalf("/target %v", got)
	}
	if s := releaseSeries(t, reg); len(s) != 1 || s[0] != "shop/5/abc123/api=1" {
		t.Fatalf("series %v", s)
	}
	// Old clients (no release fields) keep working and read the target.
	if tg, err := (&AdminClient{hc: &http.Client{Transport: rewriteTo(admin.URL)}}).Target(context.Background()); err != nil || tg != v1.addr() {
		t.Fatalf("AdminClient.Target: %q %v", tg, err)
	}
}

// rewriteTo sends every request of an AdminClient to base (an httptest
// server) instead of the unix socket.
type rewriteTo string

func (b rewriteTo) RoundTrip(r *http.Request) (*http.Response, error) {
	r2 := r.Clone(r.Context())
	r2.URL.Scheme, r2.URL.Host = "http", strings.TrimPrefix(string(b), "http://")
	return http.DefaultTransport.RoundTrip(r2)
}

// FuzzDecodeDeployRequest: the admin socket's parser never panics, and what
// it accepts is exportable: valid UTF-8, bounded, and gathered by a registry
// without error (the client library panics on invalid label values).
func FuzzDecodeDeployRequest(f *testing.F) {
	for _, s := range []string{
		`{"target":"api:8000"}`,
		`{"target":"api:8000","health_path":"/readyz","drain_timeout":"30s","project":"invoicing","release":"3","revision":"1a2b3c","service":"api"}`,
		`{"target":"x:1","release":"0"}`,
		`{"target":"x:1","revision":"caf\u00e9"}`,
		`{"target":"x:1","service":"a\"b"}`,
		`{`, `[]`, `null`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, o, err := decodeDeployRequest(bytes.NewReader(body))
		if err != nil {
			return
		}
		r := o.Release
		if r != (Release{Project: req.Project, Number: req.Release, Revision: req.Revision, Service: req.Service}) {
			t.Fatalf("options %+v do not carry the request's release %+v", r, req)
		}
		for _, v := range []string{r.Project, r.Number, r.Revision, r.Service} {
			if !utf8.ValidString(v) || len(v) > 64 || strings.ContainsAny(v, "\"\\\n{} ") {
				t.Fatalf("accepted label value %q", v)
			}
		}
		if o.HealthPath != "" && o.HealthPath[0] != '/' {
			t.Fatalf("accepted health path %q", o.HealthPath)
		}
		if o.HealthTimeout < 0 || o.HealthInterval < 0 || o.DrainTimeout < 0 {
			t.Fatalf("accepted negative durations %+v", o)
		}
		ri := newReleaseInfo()
		ri.set(r)
		reg := prometheus.NewRegistry()
		reg.MustRegister(ri)
		if _, err := reg.Gather(); err != nil {
			t.Fatalf("gather with %+v: %v", r, err)
		}
	})
}
