// Command tcp-proxy forwards TCP connections from -listen to -target. The cluster uses it to make the API
// server (bound to 127.0.0.1 only) reachable from pods at the address it advertises on the pod bridge.
// A separate small binary: as a subcommand of livesandbox-kube it showed 87 MiB RSS (mostly the big
// binary's shared text); this one has 2 MiB.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() { os.Exit(run(os.Args[1:])) }

func run(args []string) int {
	fs := flag.NewFlagSet("tcp-proxy", flag.ExitOnError)
	listen := fs.String("listen", "", "address to listen on, e.g. 10.88.0.1:6443")
	target := fs.String("target", "127.0.0.1:6443", "address to forward to")
	_ = fs.Parse(args)
	if *listen == "" {
		fmt.Fprintln(os.Stderr, "tcp-proxy: -listen is required")
		return 2
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tcp-proxy:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "tcp-proxy: %s -> %s\n", *listen, *target)
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		_ = ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return 0 // listener closed
		}
		go func(c net.Conn) {
			defer c.Close()
			u, err := net.DialTimeout("tcp", *target, 5*time.Second)
			if err != nil {
				fmt.Fprintln(os.Stderr, "tcp-proxy: dial:", err)
				return
			}
			defer u.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(u, c)
			go pipe(c, u)
			<-done
			<-done
		}(c)
	}
}
