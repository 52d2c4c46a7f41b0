package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// newDemoServiceCmd is the tiny "who am I" service used by the demo, the lab
// and the standby benchmarks: it answers "I am NAME" to HTTP GETs and to raw
// TCP clients, after an optional start-up delay (to model slow services).
func newDemoServiceCmd() *cobra.Command {
	var listen, name string
	var delay time.Duration
	cmd := &cobra.Command{
		Use:    "demo-service",
		Short:  "A tiny \"who am I\" TCP/HTTP service for demos and benchmarks",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" {
				name = os.Getenv("BATON_NODE")
			}
			time.Sleep(delay) // start-up time of a slow service
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "demo-service %s listening on %s\n", name, listen)
			for {
				c, err := ln.Accept()
				if err != nil {
					return err
				}
				go serveWhoami(c, name)
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", ":8080", "address to listen on")
	cmd.Flags().StringVar(&name, "name", "", "name to answer with (default $BATON_NODE)")
	cmd.Flags().DurationVar(&delay, "delay", 0, "wait this long before listening (start-up time)")
	return cmd
}

func serveWhoami(c net.Conn, name string) {
	defer c.Close()
	line := "I am " + name + "\n"
	br := bufio.NewReader(c)
	_ = c.SetReadDeadline(time.Now().Add(25 * time.Millisecond))
	peek, _ := br.Peek(4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if m := string(peek); m == "GET " || m == "HEAD" || m == "POST" {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		resp := &http.Response{StatusCode: 200, ProtoMajor: 1, ProtoMinor: 1, Close: true,
			ContentLength: int64(len(line)), Body: io.NopCloser(strings.NewReader(line)), Header: http.Header{}}
		resp.Header.Set("Content-Type", "text/plain")
		_ = resp.Write(c)
		return
	}
	_, _ = io.WriteString(c, line)
}
