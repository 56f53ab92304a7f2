// The pod sandbox's process: it holds the pod's namespaces open and does nothing else. Built
// here (no image can be pulled) and packed into an image of one static file.
package main

import (
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 of a pod sharing its process namespace, reap what the other containers orphan.
	go func() {
		for {
			var status syscall.WaitStatus
			if _, err := syscall.Wait4(-1, &status, 0, nil); err != nil {
				time.Sleep(time.Second) // no children yet
			}
		}
	}()
	<-stop
}
