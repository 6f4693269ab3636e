// Command pause is the infrastructure ("sandbox") container of a Kubernetes pod.
//
// It holds the pod's namespaces open and does nothing else: it waits for SIGINT or SIGTERM and
// exits 0, and, being PID 1 of the pod when the PID namespace is shared, reaps every zombie that
// is re-parented to it. It is a small replacement for upstream's pause.c, written here so that the
// whole image can be built from source with the Go toolchain alone.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is the pause image tag kubeadm expects; set with -ldflags "-X main.version=...".
var version = "dev"

func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "-v", "--version", "version":
			fmt.Printf("pause (anvil) %s\n", version)
			return
		default:
			fmt.Fprintf(os.Stderr, "usage: %s [-v|--version]\n", os.Args[0])
			os.Exit(2)
		}
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}
	signals := make(chan os.Signal, 16)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %s\n", sig)
			os.Exit(0)
		}
	}
}
