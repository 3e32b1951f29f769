package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// serve answers on the port in args[0]: HTTP GET / with the hostname (the
// task), GET /client with the connection's remote address and the
// X-Forwarded-For and X-Forwarded-Proto headers. On the port in args[1],
// raw TCP: it echoes the first line it reads (a PROXY protocol v1 header
// when the mesh sends one) and the hostname. On SIGTERM it prints
// "got SIGTERM at <unix-nanos>" and goes on serving until killed, as a
// draining server would.
func serve(args []string) {
	host, _ := os.Hostname()
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	go func() {
		for range term {
			fmt.Printf("got SIGTERM at %d\n", time.Now().UnixNano())
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, host) })
	mux.HandleFunc("/client", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "remote=%s xff=%s proto=%s\n", r.RemoteAddr, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"))
	})
	if len(args) > 1 {
		ln, err := net.Listen("tcp", ":"+args[1])
		if err != nil {
			fmt.Println("serve:", err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					line, _ := bufio.NewReader(c).ReadString('\n')
					fmt.Fprintf(c, "first=%q host=%s\n", line, host)
				}()
			}
		}()
	}
	fmt.Println("serving")
	if err := http.ListenAndServe(":"+args[0], mux); err != nil {
		fmt.Println("serve:", err)
		os.Exit(1)
	}
}
