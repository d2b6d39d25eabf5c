package kube

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"github.com/invdeploy/invdeploy/deployer"
)

// TunnelOptions control Tunnel.
type TunnelOptions struct {
	Service string
	// LocalPort on 127.0.0.1 (0: any free port); RemotePort on the pod.
	LocalPort, RemotePort int
	// Ready receives the local address once listening.
	Ready func(addr string)
}

// Tunnel forwards 127.0.0.1:LocalPort to a ready pod of the service
// through the API server (port-forward, as kubectl port-forward does)
// until ctx ends.
func Tunnel(ctx context.Context, c *Cluster, project string, o TunnelOptions, errOut io.Writer) error {
	pods := servicePods(ctx, c, o.Service)
	var pod string
	for _, p := range pods {
		if p.Labels[LabelProject] == project && p.DeletionTimestamp == nil && podReady(p) {
			pod = p.Name
			break
		}
	}
	if pod == "" {
		return fmt.Errorf("%w: service %s of project %s has no ready pod in namespace %s", deployer.ErrNotFound, o.Service, project, c.Namespace)
	}
	transport, upgrader, err := spdy.RoundTripperFor(c.Config)
	if err != nil {
		return fmt.Errorf("port-forward: %w", err)
	}
	u, err := url.Parse(c.Config.Host)
	if err != nil {
		return err
	}
	u.Path = fmt.Sprintf("%s/api/v1/namespaces/%s/pods/%s/portforward", u.Path, c.Namespace, pod)
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, u)
	stop := make(chan struct{})
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("%d:%d", o.LocalPort, o.RemotePort)}, stop, ready, io.Discard, errOut)
	if err != nil {
		return fmt.Errorf("port-forward to %s: %w", pod, err)
	}
	errc := make(chan error, 1)
	go func() { errc <- fw.ForwardPorts() }()
	select {
	case <-ready:
		ports, err := fw.GetPorts()
		if err == nil && len(ports) > 0 && o.Ready != nil {
			o.Ready(fmt.Sprintf("127.0.0.1:%d", ports[0].Local))
		}
	case err := <-errc:
		return fmt.Errorf("port-forward to %s: %w", pod, err)
	}
	select {
	case <-ctx.Done():
		close(stop)
		<-errc
		return nil
	case err := <-errc:
		return err
	}
}
