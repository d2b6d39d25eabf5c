// Command dns is the Kubernetes bed's cluster DNS: the bed cannot pull
// CoreDNS, so this answers what pods ask of it, A records of Services
// (<service>.<namespace>.svc.<domain>) read from the API server, and
// NXDOMAIN for everything else (nothing is forwarded off this machine).
//
// Usage: dns -listen 10.254.254.1:53 -kubeconfig FILE [-domain cluster.local]
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	listen := flag.String("listen", "10.254.254.1:53", "UDP address to answer on")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the bed")
	domain := flag.String("domain", "cluster.local", "cluster domain")
	flag.Parse()
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	kc, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		log.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	suffix := ".svc." + strings.TrimSuffix(*domain, ".") + "."
	buf := make([]byte, 1500)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			log.Fatal(err)
		}
		if out := answer(kc, suffix, buf[:n]); out != nil {
			pc.WriteTo(out, addr)
		}
	}
}

// answer builds the reply to one query (nil: not a query).
func answer(kc kubernetes.Interface, suffix string, q []byte) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(q)
	if err != nil || h.Response {
		return nil
	}
	question, err := p.Question()
	if err != nil {
		return nil
	}
	resp := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired, RCode: dnsmessage.RCodeNameError}
	name := strings.ToLower(question.Name.String())
	var ip netip.Addr
	if rest, ok := strings.CutSuffix(name, suffix); ok {
		if svc, ns, ok := strings.Cut(rest, "."); ok && !strings.Contains(ns, ".") {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			s, err := kc.CoreV1().Services(ns).Get(ctx, svc, metav1.GetOptions{})
			cancel()
			if err == nil {
				resp.RCode = dnsmessage.RCodeSuccess
				ip, _ = netip.ParseAddr(s.Spec.ClusterIP)
			}
		}
	}
	b := dnsmessage.NewBuilder(nil, resp)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(question)
	b.StartAnswers()
	if ip.Is4() && question.Type == dnsmessage.TypeA {
		b.AResource(dnsmessage.ResourceHeader{Name: question.Name, Class: dnsmessage.ClassINET, TTL: 5}, dnsmessage.AResource{A: ip.As4()})
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}
