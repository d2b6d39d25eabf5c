package main

import (
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func query(t testing.TB, name string, typ dnsmessage.Type) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 7, RecursionDesired: true})
	b.StartQuestions()
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var services = fake.NewSimpleClientset(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "inv"}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.42"}})

// TestAnswer: a Service's name gets its ClusterIP, anything else NXDOMAIN.
func TestAnswer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		typ   dnsmessage.Type
		rcode dnsmessage.RCode
		ip    string
	}{
		{"db.inv.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.96.0.42"},
		{"DB.inv.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeSuccess, "10.96.0.42"},
		{"db.inv.svc.cluster.local.", dnsmessage.TypeAAAA, dnsmessage.RCodeSuccess, ""},
		{"api.inv.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		{"db.svc.cluster.local.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
		{"example.com.", dnsmessage.TypeA, dnsmessage.RCodeNameError, ""},
	} {
		out := answer(services, ".svc.cluster.local.", query(t, tc.name, tc.typ))
		var p dnsmessage.Parser
		h, err := p.Start(out)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if h.ID != 7 || !h.Response || h.RCode != tc.rcode {
			t.Errorf("%s %v: header %+v", tc.name, tc.typ, h)
		}
		p.SkipAllQuestions()
		got := ""
		if a, err := p.AllAnswers(); err == nil && len(a) == 1 {
			if r, ok := a[0].Body.(*dnsmessage.AResource); ok {
				got = fmtIP(r.A)
			}
		}
		if got != tc.ip {
			t.Errorf("%s %v: answer %q, want %q", tc.name, tc.typ, got, tc.ip)
		}
	}
}

func fmtIP(a [4]byte) string { return netip.AddrFrom4(a).String() }

// FuzzAnswer: no packet makes the server panic, and what it answers parses.
func FuzzAnswer(f *testing.F) {
	f.Add(query(f, "db.inv.svc.cluster.local.", dnsmessage.TypeA))
	f.Add(query(f, "x.", dnsmessage.TypeMX))
	f.Add([]byte{0, 1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		out := answer(services, ".svc.cluster.local.", b)
		if out == nil {
			return
		}
		var p dnsmessage.Parser
		if _, err := p.Start(out); err != nil {
			t.Fatalf("the answer does not parse: %v", err)
		}
	})
}
