package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestPositiveInts(t *testing.T) {
	for _, c := range []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"", nil, false},
		{"1,2,3", []int{1, 2, 3}, false},
		{" 2 , 4,", []int{2, 4}, false},
		{"1,0", nil, true},
		{"1,x", nil, true},
		{"-1", nil, true},
	} {
		got, err := positiveInts(c.in)
		if (err != nil) != c.wantErr || !slices.Equal(got, c.want) {
			t.Errorf("positiveInts(%q) = %v, %v; want %v, error %t", c.in, got, err, c.want, c.wantErr)
		}
	}
}

// TestReadCPUCountsThisProcess burns CPU in this process and expects readCPU to count it as the
// client's, and perOp to share it out.
func TestReadCPUCountsThisProcess(t *testing.T) {
	used := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	before, err := readCPU()
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for start := used(); used()-start < 200*time.Millisecond; {
		x++
	}
	after, err := readCPU()
	if err != nil {
		t.Fatal(err)
	}
	use := after.since(before, time.Second)
	// At least the 200 ms spun (less a clock tick at each end), plus the second passed in as the
	// load generator's.
	if got := use.groups[cpuClient]; got < time.Second+180*time.Millisecond {
		t.Errorf("client CPU %s over 200 ms of spinning and 1 s of load; x=%d", got, x)
	}
	if use.idle < 0 || use.idle > 1 {
		t.Errorf("idle share %f", use.idle)
	}
	per := use.perOp(4)
	if want := use.groups[cpuClient].Seconds() * 1000 / 4; per[cpuClient] != want || per["all"] < want {
		t.Errorf("perOp(4) = %v; want client %.3f ms", per, want)
	}
}

// TestRunRefusesWorkersLeftOut: the phases settle on work only billingd's workers do, so a
// billingd without some of them is refused before anything starts (-breakdown measures that).
func TestRunRefusesWorkersLeftOut(t *testing.T) {
	err := run(context.Background(), []string{"-env", "WORKERS=relay"}, func(string) string { return "" }, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "-breakdown") {
		t.Errorf("run with WORKERS=relay: %v; want a refusal naming -breakdown", err)
	}
}
