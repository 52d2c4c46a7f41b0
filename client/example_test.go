package client_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"

	"github.com/baton-ha/baton/client"
)

// fakeAgent stands in for a Baton agent's API on loopback: it reports owner
// (host:port) as node n1, the owner of group "web".
func fakeAgent(owner string) *httptest.Server {
	host, port, _ := net.SplitHostPort(owner)
	p, _ := strconv.Atoi(port)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/groups/web/endpoints" {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": "unknown group"})
			return
		}
		json.NewEncoder(w).Encode(client.Endpoints{
			Group: "web", Mode: client.ModeActivePassive, Generation: 7,
			Endpoints: []client.Endpoint{{Node: "n1", Address: host, Port: p, Epoch: 7}},
		})
	}))
}

// greeter is the group's service: it greets each connection.
func greeter() net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, "hello from n1")
			c.Close()
		}
	}()
	return ln
}

func ExampleClient_Dial() {
	service := greeter()
	defer service.Close()
	agent := fakeAgent(service.Addr().String())
	defer agent.Close()

	c, err := client.New(client.Options{
		Agents: []string{agent.Listener.Addr().String()}, // any agents of the cluster
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Dial reaches the current owner of "web", waiting out a failover in
	// progress. If the owner is deposed later, the client closes conn and
	// reads fail with client.ErrDeposed: redial.
	conn, err := c.Dial(context.Background(), "web")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(line)
	// Output: hello from n1
}

// An http.Client whose requests to http://web/ go to the owner of group "web".
func Example_httpTransport() {
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello from n1")
	}))
	defer web.Close()
	agent := fakeAgent(web.Listener.Addr().String())
	defer agent.Close()

	c, err := client.New(client.Options{Agents: []string{agent.Listener.Addr().String()}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	hc := &http.Client{Transport: &http.Transport{DialContext: c.DialContext}}
	defer hc.CloseIdleConnections()
	resp, err := hc.Get("http://web/")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(string(body))
	// Output: hello from n1
}
