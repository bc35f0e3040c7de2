package runner

import (
	"context"
	"runtime"
	"sync"
	"testing"
)

// TestPdeathsigThread runs children while other goroutines keep locking OS
// threads and exiting, which makes the runtime end those threads. Were the
// thread that forked a child among them, Pdeathsig would kill the child.
// Run waits in a blocking syscall right after Start, so without the thread
// lock the window is small: this test catches its removal only now and then.
func TestPdeathsigThread(t *testing.T) {
	t.Parallel()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				done := make(chan struct{})
				go func() {
					defer close(done)
					runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
					runtime.Gosched()
				}()
				<-done
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
	}()
	for range 5 {
		code, err := Run(context.Background(), Cmd{Args: []string{"sh", "-c", "sleep 0.1"}, Env: shEnv()})
		if err != nil || code != 0 {
			t.Fatalf("Run = %d, %v; want 0: the child died with the thread that forked it", code, err)
		}
	}
}
