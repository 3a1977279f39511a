// Command teardowns makes each classic TCP teardown failure happen once on
// loopback, against its own listeners, and logs every error with Go's log
// package (UTC, microseconds) exactly as a Go service would print it.
//
// The tcpteardown tests run it under strace and check that both the strace
// importer and the application-log importer recognise every failure. It
// must never touch anything but loopback, and every step is bounded.
//
// Each failure is preceded by a marker line "step NAME" so tests can tell
// which step a log line belongs to.
package main

import (
	"errors"
	"flag"
	"log"
	"net"
	"os"
	"time"
)

var host = flag.String("host", "127.0.0.1", "loopback address to use (127.0.0.1 or ::1)")

func main() {
	flag.Parse()
	log.SetFlags(log.LstdFlags | log.Lmicroseconds | log.LUTC)
	log.SetOutput(os.Stderr)
	steps := []struct {
		name string
		run  func() error
	}{
		{"refused", refused},
		{"reset", reset},
		{"broken-pipe", brokenPipe},
		{"eof", eof},
		{"closed", useOfClosed},
		{"timeout", timeout},
	}
	failed := false
	for _, step := range steps {
		log.Printf("step %s", step.name)
		if err := step.run(); err != nil {
			log.Print(err)
		} else {
			log.Printf("step %s: no error (unexpected)", step.name)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}

func listen() net.Listener {
	ln, err := net.Listen("tcp", net.JoinHostPort(*host, "0"))
	if err != nil {
		log.Fatalf("setup: %v", err)
	}
	return ln
}

// refused: dial a port whose listener is gone; the kernel answers RST/ACK.
func refused() error {
	ln := listen()
	addr := ln.Addr().String()
	ln.Close()
	conn, err := net.Dial("tcp", addr)
	if err == nil {
		conn.Close()
	}
	return err
}

// pair returns a connected client and the server side of it.
func pair(ln net.Listener) (net.Conn, net.Conn) {
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatalf("setup: %v", err)
	}
	server, err := ln.Accept()
	if err != nil {
		log.Fatalf("setup: %v", err)
	}
	return client, server
}

// reset: the server closes with SO_LINGER 0 (RST); the client's read fails.
func reset() error {
	ln := listen()
	defer ln.Close()
	client, server := pair(ln)
	defer client.Close()
	if _, err := client.Write([]byte("request")); err != nil {
		return err
	}
	server.(*net.TCPConn).SetLinger(0) // close sends RST at once, unread data or not
	server.Close()
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := client.Read(make([]byte, 16))
	return err
}

// brokenPipe: the server closes (FIN), the client writes (the server
// answers RST), the next write fails with EPIPE.
func brokenPipe() error {
	ln := listen()
	defer ln.Close()
	client, server := pair(ln)
	defer client.Close()
	server.Close()
	for i := 0; i < 200; i++ {
		if _, err := client.Write([]byte("data")); err != nil {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("broken-pipe: writes kept succeeding")
}

// eof: the server closes cleanly (FIN); the client's read returns io.EOF.
func eof() error {
	ln := listen()
	defer ln.Close()
	client, server := pair(ln)
	defer client.Close()
	server.Close()
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, err := client.Read(make([]byte, 16))
	return err // io.EOF, logged as "EOF"
}

// useOfClosed: reading from a connection we already closed ourselves.
func useOfClosed() error {
	ln := listen()
	defer ln.Close()
	client, server := pair(ln)
	defer server.Close()
	client.Close()
	_, err := client.Read(make([]byte, 16))
	return err
}

// timeout: nothing arrives before the read deadline.
func timeout() error {
	ln := listen()
	defer ln.Close()
	client, server := pair(ln)
	defer server.Close()
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err := client.Read(make([]byte, 16))
	return err
}
