// Command pause is the sandbox ("infrastructure") container of the test node's pods: it
// holds the pod's namespaces and does nothing else. The node has no registry to pull
// registry.k8s.io/pause from, so build.sh --node builds this one and packs it as an OCI
// image (grader.invalid/pause) that containerd's sandbox_image names.
//
// As PID 1 of the sandbox it reaps orphans and exits on SIGINT or SIGTERM.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
