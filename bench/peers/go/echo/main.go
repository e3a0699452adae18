// The Go echo server that uvchan's echo_server is measured against (bench/echo.sh): one goroutine
// per connection copying the connection to itself with io.Copy, as Go programmers write it.
// bench/echo.sh runs it with GOMAXPROCS=1.   usage: go-echo PORT
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go-echo PORT")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-echo:", err)
		os.Exit(1)
	}
	// SIGINT/SIGTERM end the process with status 0, like the C peer.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		ln.Close()
		os.Exit(0)
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			fmt.Fprintln(os.Stderr, "go-echo: accept:", err)
			continue
		}
		go func(c net.Conn) {
			io.Copy(c, c)
			c.Close()
		}(c)
	}
}
