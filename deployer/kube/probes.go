package kube

import (
	"fmt"
	"math"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/invdeploy/invdeploy/deployer"
)

// probes turns a compose healthcheck into the container's probes:
// readiness is an HTTP GET of x-invdeploy health_path on the service's
// first port when it names one (what the local rollout proxy asks too),
// else the healthcheck's command; liveness is the healthcheck's command,
// failing after its retries, and a startup probe gives start_period.
func probes(c *corev1.Container, s types.ServiceConfig, ports []corev1.ServicePort) error {
	hc := s.HealthCheck
	healthPath, err := deployer.HealthPath(s)
	if err != nil {
		return err
	}
	if hc == nil || hc.Disable || len(hc.Test) == 0 || hc.Test[0] == "NONE" {
		if healthPath == "" || len(ports) == 0 {
			return nil
		}
		hc = &types.HealthCheckConfig{}
	}
	period := seconds(hc.Interval, 30*time.Second)
	timeout := seconds(hc.Timeout, 30*time.Second)
	retries := int32(3)
	if hc.Retries != nil && *hc.Retries > 0 {
		retries = int32(*hc.Retries)
	}
	var exec *corev1.ExecAction
	if len(hc.Test) > 0 {
		switch hc.Test[0] {
		case "CMD":
			exec = &corev1.ExecAction{Command: append([]string(nil), hc.Test[1:]...)}
		case "CMD-SHELL":
			if len(hc.Test) != 2 {
				return fmt.Errorf("services.%s.healthcheck.test: CMD-SHELL takes one command string", s.Name)
			}
			exec = &corev1.ExecAction{Command: []string{"/bin/sh", "-c", hc.Test[1]}}
		default:
			return fmt.Errorf("services.%s.healthcheck.test: want CMD or CMD-SHELL first, not %q", s.Name, hc.Test[0])
		}
	}
	ready := corev1.ProbeHandler{Exec: exec}
	if healthPath != "" && len(ports) > 0 {
		ready = corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: healthPath, Port: intstr.FromInt32(ports[0].Port)}}
	}
	// Readiness is asked often (every second at most): it gates the
	// rollout and the Service's endpoints.
	readyPeriod := min(period, 1)
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: ready, PeriodSeconds: readyPeriod, TimeoutSeconds: timeout, FailureThreshold: 2, SuccessThreshold: 1}
	if exec == nil {
		return nil
	}
	c.LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: exec}, PeriodSeconds: period, TimeoutSeconds: timeout, FailureThreshold: retries}
	if hc.StartPeriod != nil && *hc.StartPeriod > 0 {
		start := seconds(hc.StartPeriod, 0)
		c.StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: exec}, PeriodSeconds: period, TimeoutSeconds: timeout,
			FailureThreshold: int32(math.Ceil(float64(start)/float64(period))) + retries}
	}
	return nil
}

// seconds is a compose duration in whole seconds (at least 1), def when unset.
func seconds(d *types.Duration, def time.Duration) int32 {
	v := def
	if d != nil && *d > 0 {
		v = time.Duration(*d)
	}
	return int32(max(1, math.Ceil(v.Seconds())))
}
