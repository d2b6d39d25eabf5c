// Command pause is the pod sandbox of the Kubernetes test bed: it holds the
// pod's namespaces and does nothing until it is told to stop. (The bed
// cannot pull registry.k8s.io/pause, so it builds this one FROM scratch.)
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	// As the sandbox's pid 1 it also reaps the zombies of shared-pid pods.
	child := make(chan os.Signal, 1)
	signal.Notify(child, syscall.SIGCHLD)
	for {
		select {
		case <-sig:
			return
		case <-child:
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
