// Command app is the program of the containerd runtime's test image. Its
// first argument picks what it does, so one image covers every test.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Println("app: no mode")
		os.Exit(2)
	}
	args := os.Args[2:]
	switch os.Args[1] {
	case "hello":
		// The image's default command.
		fmt.Println("hello from the image")
	case "echo":
		// Output, then an exit code: echo CODE WORDS...
		fmt.Println("out:", strings.Join(args[1:], " "))
		fmt.Fprintln(os.Stderr, "err:", strings.Join(args[1:], " "))
		code, _ := strconv.Atoi(args[0])
		os.Exit(code)
	case "env":
		// What the container sees, one KEY=VALUE a line.
		wd, _ := os.Getwd()
		host, _ := os.Hostname()
		fmt.Printf("argv=%s\n", strings.Join(os.Args, " "))
		fmt.Printf("cwd=%s\nuid=%d\ngid=%d\nhostname=%s\n", wd, os.Getuid(), os.Getgid(), host)
		for _, kv := range os.Environ() {
			fmt.Println("env " + kv)
		}
	case "sleep":
		// Runs until killed; with "ignore" it ignores SIGTERM like a
		// busybox PID 1.
		if len(args) > 0 && args[0] == "ignore" {
			signal.Ignore(syscall.SIGTERM)
		} else {
			// A PID 1 dies of no signal it does not handle but SIGKILL.
			term := make(chan os.Signal, 1)
			signal.Notify(term, syscall.SIGTERM)
			go func() {
				<-term
				fmt.Println("got SIGTERM")
				os.Exit(0)
			}()
		}
		fmt.Println("sleeping")
		for {
			time.Sleep(time.Hour)
		}
	case "tick":
		// A numbered line every 20 ms, until killed.
		for i := 0; ; i++ {
			fmt.Println("tick", i)
			time.Sleep(20 * time.Millisecond)
		}
	case "alloc":
		// Touches MiB of memory, then sleeps.
		mib, _ := strconv.Atoi(args[0])
		var keep [][]byte
		for i := 0; i < mib; i++ {
			b := make([]byte, 1<<20)
			for j := range b {
				b[j] = byte(j)
			}
			keep = append(keep, b)
		}
		fmt.Println("allocated", len(keep))
		time.Sleep(time.Hour)
	case "spawn":
		// Starts N sleeping children and reports how many started.
		n, _ := strconv.Atoi(args[0])
		started := 0
		for i := 0; i < n; i++ {
			cmd := exec.Command("/app", "sleep")
			if err := cmd.Start(); err != nil {
				fmt.Println("spawn failed:", err)
				break
			}
			started++
		}
		fmt.Println("spawned", started)
		time.Sleep(time.Hour)
	case "write":
		// write FILE TEXT, then exit.
		if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
			fmt.Println("write:", err)
			os.Exit(1)
		}
	case "netns":
		// The network namespace the process is in.
		ns, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			fmt.Println("netns:", err)
			os.Exit(1)
		}
		fmt.Println("netns=" + ns)
	case "serve":
		serve(args)
	case "cat":
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Println("cat:", err)
			os.Exit(1)
		}
		fmt.Printf("%s\n", b)
	default:
		fmt.Println("app: unknown mode", os.Args[1])
		os.Exit(2)
	}
}
