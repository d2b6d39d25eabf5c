// Package kube deploys a compose stack to Kubernetes: the third applier of
// the one model (check -> plan -> apply -> wait), next to the local and
// remote engines and Swarm. A stack's services become Deployments (or
// StatefulSets with a claim per named volume), Services, Secrets mounted
// as files and ConfigMaps, applied with server-side apply under the field
// manager "invdeploy" (never client-side apply: its last-applied
// annotation would hold every secret value).
package kube

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/invdeploy/invdeploy/deployer"
)

// ConnectOptions say which cluster and namespace, as kubectl's flags do.
type ConnectOptions struct {
	// Kubeconfig is the kubeconfig file ("" means $KUBECONFIG, then
	// ~/.kube/config, as kubectl reads them).
	Kubeconfig string
	// Context is the kubeconfig context ("" means its current context).
	Context string
	// Namespace ("" means the context's namespace, else "default").
	Namespace string
	// Timeout bounds each API request (0: 30 s).
	Timeout time.Duration
}

// Cluster is a connection to one cluster and namespace.
type Cluster struct {
	Client    kubernetes.Interface
	Config    *rest.Config
	Namespace string
	// Context and Server say where: for messages.
	Context string
	Server  string
}

// Connect reads the kubeconfig as kubectl does (client-go's loading
// rules: contexts, exec credential plugins such as EKS's) and returns a
// client; it does not contact the cluster (Check does).
func Connect(o ConnectOptions) (*Cluster, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		rules.ExplicitPath = o.Kubeconfig
	}
	overrides := &clientcmd.ConfigOverrides{CurrentContext: o.Context}
	if o.Namespace != "" {
		overrides.Context.Namespace = o.Namespace
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "cluster", Subject: "kubeconfig",
				Message: "no kubeconfig found: pass --kubeconfig FILE, set KUBECONFIG, or write ~/.kube/config (e.g. aws eks update-kubeconfig --name CLUSTER)"}}}
		}
		return nil, &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "cluster", Subject: "kubeconfig", Message: err.Error()}}}
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, fmt.Errorf("read the namespace of the kubeconfig context: %w", err)
	}
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("read the kubeconfig: %w", err)
	}
	ctxName := o.Context
	if ctxName == "" {
		ctxName = raw.CurrentContext
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	cfg.Timeout = o.Timeout
	cfg.UserAgent = "invdeploy"
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("make a client for %s: %w", cfg.Host, err)
	}
	return &Cluster{Client: cs, Config: cfg, Namespace: ns, Context: ctxName, Server: cfg.Host}, nil
}

// Where names the cluster and namespace for messages.
func (c *Cluster) Where() string {
	if c.Context != "" {
		return fmt.Sprintf("context %s (%s), namespace %s", c.Context, c.Server, c.Namespace)
	}
	return fmt.Sprintf("%s, namespace %s", c.Server, c.Namespace)
}

// unreachable is the preflight refusal when the cluster does not answer.
func (c *Cluster) unreachable(err error) error {
	msg := fmt.Sprintf("the cluster does not answer (%v): check the kubeconfig context (--context), the network path to %s, and the credentials", oneLine(err), c.Server)
	return &deployer.PreflightError{Problems: []deployer.Problem{{Rule: "cluster", Subject: c.Server, Message: msg}}}
}

func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// ServerVersion asks the cluster its version (the first contact).
func (c *Cluster) ServerVersion(ctx context.Context) (string, error) {
	type result struct {
		v   string
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := c.Client.Discovery().ServerVersion()
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{v: v.GitVersion}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return "", c.unreachable(r.err)
		}
		return r.v, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

var errStop = errors.New("stop")
