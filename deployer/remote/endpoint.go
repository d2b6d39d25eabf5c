package remote

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// DefaultSocket is the remote engine's socket when an ssh:// URL names none.
const DefaultSocket = "/var/run/docker.sock"

// Endpoint is a parsed --host URL of a remote engine.
type Endpoint struct {
	// Scheme is "ssh" or "tcp".
	Scheme string
	// User is the SSH login (ssh only); empty means the local user name.
	User string
	// Host is a host name or an IP address, without brackets.
	Host string
	// Port is the TCP port: 22 by default for ssh; required for tcp.
	Port int
	// Socket is the engine's unix socket on the remote host (ssh only).
	Socket string
}

// Address returns host:port for dialing.
func (e Endpoint) Address() string {
	return net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
}

// String returns the URL form, without anything secret (URLs carry none).
func (e Endpoint) String() string {
	switch e.Scheme {
	case "ssh":
		s := "ssh://"
		if e.User != "" {
			s += e.User + "@"
		}
		s += e.Address()
		if e.Socket != DefaultSocket {
			s += e.Socket
		}
		return s
	default:
		return e.Scheme + "://" + e.Address()
	}
}

// IsLoopback reports whether the host is a loopback address or "localhost".
func (e Endpoint) IsLoopback() bool {
	if strings.EqualFold(e.Host, "localhost") {
		return true
	}
	ip := net.ParseIP(e.Host)
	return ip != nil && ip.IsLoopback()
}

// ParseHost parses ssh://[user@]host[:port][/socket/path] or tcp://host:port.
// It refuses anything it would have to ignore (a password, a query, a
// fragment), so a typo never silently changes what is connected to.
func ParseHost(raw string) (Endpoint, error) {
	var ep Endpoint
	if strings.TrimSpace(raw) != raw || raw == "" {
		return ep, errors.New("host URL is empty or has surrounding spaces")
	}
	if _, has := passwordOf(raw); has {
		return ep, fmt.Errorf("host URL: a password in the URL is not accepted; use an SSH key (ssh-agent or --identity)")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return ep, fmt.Errorf("host URL %q: %w", raw, err)
	}
	if u.Opaque != "" || u.Host == "" {
		return ep, fmt.Errorf("host URL %q: want ssh://user@host[:port][/socket] or tcp://host:port", raw)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return ep, fmt.Errorf("host URL %q: a query or fragment is not allowed", raw)
	}
	ep.Scheme = strings.ToLower(u.Scheme)
	ep.Host = u.Hostname()
	if ep.Host == "" || strings.ContainsAny(ep.Host, " \t/\\@") {
		return ep, fmt.Errorf("host URL %q: missing or invalid host name", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return ep, fmt.Errorf("host URL %q: port %q is not in 1..65535", raw, p)
		}
		ep.Port = n
	} else if strings.HasSuffix(u.Host, ":") {
		return ep, fmt.Errorf("host URL %q: empty port", raw)
	}
	switch ep.Scheme {
	case "ssh":
		if u.User != nil {
			ep.User = u.User.Username()
			if ep.User == "" || strings.ContainsAny(ep.User, " \t:/@") {
				return ep, fmt.Errorf("host URL %q: invalid user name", raw)
			}
		}
		if ep.Port == 0 {
			ep.Port = 22
		}
		ep.Socket = DefaultSocket
		if u.Path != "" && u.Path != "/" {
			if u.Path != path.Clean(u.Path) || strings.ContainsRune(u.Path, 0) {
				return ep, fmt.Errorf("host URL %q: socket path %q is not clean", raw, u.Path)
			}
			ep.Socket = u.Path
		}
	case "tcp":
		if u.User != nil {
			return ep, fmt.Errorf("host URL %q: tcp:// takes no user name", raw)
		}
		if u.Path != "" && u.Path != "/" {
			return ep, fmt.Errorf("host URL %q: tcp:// takes no path", raw)
		}
		if ep.Port == 0 {
			return ep, fmt.Errorf("host URL %q: tcp:// needs a port, usually 2376 (TLS)", raw)
		}
	default:
		return ep, fmt.Errorf("host URL %q: scheme %q not supported; use ssh:// or tcp:// (with TLS)", raw, u.Scheme)
	}
	return ep, nil
}

// passwordOf finds a user:password@ part in a URL-like string without
// parsing it fully (it may be malformed), so no message ever quotes it.
func passwordOf(raw string) (string, bool) {
	rest := raw
	if i := strings.Index(rest, "://"); i >= 0 {
		rest = rest[i+3:]
	}
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return "", false
	}
	_, pw, has := strings.Cut(rest[:at], ":")
	return pw, has
}

// Redact returns raw with any password replaced, for messages.
func Redact(raw string) string {
	pw, has := passwordOf(raw)
	if !has || pw == "" {
		return raw
	}
	return strings.Replace(raw, ":"+pw+"@", ":xxxxx@", 1)
}
