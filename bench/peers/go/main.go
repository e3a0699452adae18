// The Go side of uvchan's benchmarks: the same workloads as bench/uvchan-bench.c, printing the
// same one-line format, "<workload> <n> <value> <unit> [details]". Run with GOMAXPROCS=1, except
// the thread_* workloads (the peers of uvchan's two loops on two threads): GOMAXPROCS=2.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"time"
)

func perOp(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(n) }

func pingpong(n int) {
	a, b := make(chan int), make(chan int)
	go func() {
		for v := range a {
			b <- v + 1
		}
		close(b)
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		a <- i
		<-b
	}
	fmt.Printf("pingpong %d %.1f ns/roundtrip\n", n, perOp(time.Since(start), n))
	close(a)
}

func buffered(items int) {
	c, done := make(chan int, 1024), make(chan int)
	go func() {
		sum := 0
		for v := range c {
			sum += v
		}
		done <- sum
	}()
	start := time.Now()
	for i := 0; i < items; i++ {
		c <- i
	}
	close(c)
	<-done
	fmt.Printf("buffered1024 %d %.1f ns/item\n", items, perOp(time.Since(start), items))
}

func pipeline(n, stages int) {
	first := make(chan int)
	in := first
	for s := 0; s < stages; s++ {
		out := make(chan int)
		go func(in <-chan int, out chan<- int) {
			for v := range in {
				out <- v * 2 % 1000003
			}
			close(out)
		}(in, out)
		in = out
	}
	go func() {
		for i := 0; i < n; i++ {
			first <- i
		}
		close(first)
	}()
	start := time.Now()
	count := 0
	for range in {
		count++
	}
	fmt.Printf("pipeline%d %d %.1f ns/item/stage\n", stages, n, perOp(time.Since(start), n*stages))
}

func selectFour(n int) {
	cs := [4]chan int{make(chan int, 1), make(chan int, 1), make(chan int, 1), make(chan int, 1)}
	start := time.Now()
	for i := 0; i < n; i++ {
		cs[i%4] <- i
		select {
		case <-cs[0]:
		case <-cs[1]:
		case <-cs[2]:
		case <-cs[3]:
		}
	}
	fmt.Printf("select4 %d %.1f ns/op\n", n, perOp(time.Since(start), n))
}

func sieve(count int) {
	start := time.Now()
	ch := make(chan int)
	go func(out chan<- int) {
		for i := 2; ; i++ {
			out <- i
		}
	}(ch)
	last := 0
	for i := 0; i < count; i++ {
		p := <-ch
		last = p
		next := make(chan int)
		go func(in <-chan int, out chan<- int, p int) {
			for {
				v := <-in
				if v%p != 0 {
					out <- v
				}
			}
		}(ch, next, p)
		ch = next
	}
	fmt.Printf("sieve %d %.3f ms (last prime %d)\n", count, float64(time.Since(start).Nanoseconds())/1e6, last)
}

func parked(n int) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	c, done := make(chan int), make(chan bool)
	start := time.Now()
	for i := 0; i < n; i++ {
		go func() { <-c; done <- true }()
	}
	for runtime.NumGoroutine() < n+1 {
		runtime.Gosched()
	}
	spawn := time.Since(start)
	runtime.ReadMemStats(&after)
	close(c)
	for i := 0; i < n; i++ {
		<-done
	}
	fmt.Printf("parked %d %.0f bytes/task sys, spawn+park %.1f ns/task, spawn+wake+exit %.1f ns/task\n", n,
		float64(after.Sys-before.Sys)/float64(n), perOp(spawn, n), perOp(time.Since(start), n))
}

// Goroutines started and finished in waves of 10k, joined with a WaitGroup (uvchan's "spawn").
func spawn(n int) {
	var wg sync.WaitGroup
	start := time.Now()
	for done := 0; done < n; {
		wave := 10000
		if n-done < wave {
			wave = n - done
		}
		wg.Add(wave)
		for i := 0; i < wave; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
		done += wave
	}
	fmt.Printf("spawn %d %.1f ns/task (spawn, run, exit)\n", n, perOp(time.Since(start), n))
}

// The peers of uvchan's thread workloads: the same exchange between two goroutines, each free to
// run on its own thread (GOMAXPROCS=2), neither of them the main goroutine.
func threadPingpong(n int) {
	a, b, done := make(chan int), make(chan int), make(chan time.Duration)
	go func() {
		for v := range a {
			b <- v + 1
		}
		close(b)
	}()
	go func() {
		start := time.Now()
		for i := 0; i < n; i++ {
			a <- i
			if <-b != i+1 {
				panic("thread_pingpong: wrong value")
			}
		}
		d := time.Since(start)
		close(a)
		done <- d
	}()
	d := <-done
	fmt.Printf("thread_pingpong %d %.1f ns/roundtrip gomaxprocs=%d\n", n, perOp(d, n), runtime.GOMAXPROCS(0))
}

func threadBuffered(items int) {
	c, done := make(chan int, 1024), make(chan int)
	go func() {
		sum := 0
		for v := range c {
			sum += v
		}
		done <- sum
	}()
	start := time.Now()
	go func() {
		for i := 0; i < items; i++ {
			c <- i
		}
		close(c)
	}()
	if sum := <-done; sum != items*(items-1)/2 {
		panic("thread_buffered: wrong sum")
	}
	fmt.Printf("thread_buffered %d %.1f ns/item gomaxprocs=%d\n", items, perOp(time.Since(start), items), runtime.GOMAXPROCS(0))
}

func main() {
	n := flag.Int("n", 1000000, "operations")
	w := flag.String("w", "all", "workload")
	flag.Parse()
	ran := false
	run := func(name string, f func()) {
		if *w == "all" || *w == name {
			f()
			ran = true
		}
	}
	run("pingpong", func() { pingpong(*n) })
	run("buffered", func() { buffered(*n * 10) })
	run("pipeline", func() { pipeline(*n, 4) })
	run("select", func() { selectFour(*n) })
	run("sieve", func() { sieve(2000) })
	run("parked", func() { parked(100000) })
	run("spawn", func() { spawn(*n) })
	run("thread_pingpong", func() { threadPingpong(*n) })
	run("thread_buffered", func() { threadBuffered(*n * 10) })
	if !ran {
		fmt.Fprintln(os.Stderr, "unknown workload", *w)
		os.Exit(2)
	}
}
