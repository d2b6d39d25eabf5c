// Package portprobe finds which TCP ports are already taken on a host, by
// trying to listen on each on all interfaces, exactly as a server (or
// docker-proxy publishing the port) would. The deployer runs it in a
// short-lived container in the target host's network namespace.
package portprobe

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"syscall"
)

// Held returns the ports of ports that something already listens on. It
// fails for any other reason a port cannot be bound (e.g. a privileged port
// without the capability), naming the port.
func Held(ports []int) ([]int, error) {
	var held []int
	for _, p := range ports {
		if p < 1 || p > 65535 {
			return nil, fmt.Errorf("port %d: out of range 1..65535", p)
		}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if errors.Is(err, syscall.EADDRINUSE) {
			held = append(held, p)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("probe port %d: %w", p, err)
		}
		if err := l.Close(); err != nil {
			return nil, fmt.Errorf("release port %d: %w", p, err)
		}
	}
	return held, nil
}

// ParsePorts parses decimal port numbers given on a command line.
func ParsePorts(args []string) ([]int, error) {
	if len(args) == 0 {
		return nil, errors.New("no ports given")
	}
	ports := make([]int, 0, len(args))
	for _, a := range args {
		p, err := strconv.Atoi(a)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("%q is not a TCP port (1..65535)", a)
		}
		ports = append(ports, p)
	}
	return ports, nil
}
