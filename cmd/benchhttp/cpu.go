package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Where a phase's CPU time went, read from /proc: the processes of the machine grouped by what
// they are, and the machine's busy and idle time.

// CPU groups, in the order the tables print them.
const (
	cpuClient   = "client" // the load: vegeta for HTTP phases, benchhttp's own writers for the bare INSERT
	cpuBillingd = "billingd"
	cpuPostgres = "PostgreSQL"
	cpuRedis    = "Redis"
)

var cpuGroups = []string{cpuClient, cpuBillingd, cpuPostgres, cpuRedis}

// groupOf names the group of a process by its command name (PostgreSQL's backends keep the
// server's name whatever title they show).
var groupOf = map[string]string{"billingd": cpuBillingd, "postgres": cpuPostgres, "redis-server": cpuRedis}

// clockTick is the unit of /proc's CPU times (USER_HZ, 100 on every Linux architecture Go runs on).
const clockTick = 10 * time.Millisecond

// cpuSample is the CPU time used up to one moment: per group, and by the whole machine.
type cpuSample struct {
	groups     map[string]time.Duration
	procs      map[string]int // processes per group
	busy, idle time.Duration
}

// readCPU samples /proc. A group's time includes its processes' children that have exited and
// been waited for (cutime and cstime): a PostgreSQL backend whose connection closed during the
// phase is still counted, through the postmaster, once the postmaster has reaped it (until then
// a sample may miss it; see reaped). benchhttp's own children are vegeta runs, which attack
// measures itself, so for benchhttp only its own time counts (as the client).
func readCPU() (cpuSample, error) {
	s := cpuSample{groups: map[string]time.Duration{}, procs: map[string]int{}}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s, err
	}
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	fields := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal ...
	if len(fields) < 9 || fields[0] != "cpu" {
		return s, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, f := range fields[1:9] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return s, fmt.Errorf("/proc/stat: %w", err)
		}
		if i == 3 || i == 4 { // idle, iowait
			s.idle += time.Duration(n) * clockTick
		} else {
			s.busy += time.Duration(n) * clockTick
		}
	}
	self := os.Getpid()
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(dir))
		data, err := os.ReadFile(dir + "/stat")
		if err != nil {
			continue // the process has exited
		}
		// pid (comm) state ppid … utime stime cutime cstime: the command name may hold spaces
		// and parentheses, so the fields are counted from its last ')'.
		open, end := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
		if open < 0 || end < open {
			continue
		}
		comm := string(data[open+1 : end])
		group := groupOf[comm]
		if pid == self {
			group = cpuClient
		}
		if group == "" {
			continue
		}
		rest := strings.Fields(string(data[end+1:])) // rest[0] is the state, field 3 of stat
		if len(rest) < 15 {
			continue
		}
		s.procs[group]++
		times := rest[11:15] // fields 14–17: utime stime cutime cstime
		if pid == self {
			times = times[:2]
		}
		for _, f := range times {
			n, _ := strconv.ParseInt(f, 10, 64)
			s.groups[group] += time.Duration(n) * clockTick
		}
	}
	return s, nil
}

// cpuUse is what a phase used: CPU time per group, and the machine's idle share.
type cpuUse struct {
	groups map[string]time.Duration
	idle   float64 // of the machine's CPU time over the phase (all cores)
}

// since is the CPU used from sample a to s; load is the load generator's own CPU time, which
// the samples do not see (it ran as a child process of its own).
func (s cpuSample) since(a cpuSample, load time.Duration) cpuUse {
	u := cpuUse{groups: map[string]time.Duration{}}
	for _, g := range cpuGroups {
		u.groups[g] = s.groups[g] - a.groups[g]
	}
	u.groups[cpuClient] += load
	if all := s.busy + s.idle - a.busy - a.idle; all > 0 {
		u.idle = float64(s.idle-a.idle) / float64(all)
	}
	return u
}

// perOp is the use per operation, in milliseconds, by group, and their sum under "all".
func (u cpuUse) perOp(ops int) map[string]float64 {
	per := map[string]float64{}
	if ops <= 0 {
		return per
	}
	for g, d := range u.groups {
		ms := d.Seconds() * 1000 / float64(ops)
		per[g] = ms
		per["all"] += ms
	}
	return per
}

// reaped waits (up to 5 s) until no more processes of group run than at sample a, and then
// samples again: the processes that exited since a are counted in their parent's time by then.
// (One that exits during a sample can be missed by it: read after its parent, it is gone before
// its own entry is read.)
func reaped(a cpuSample, group string) (cpuSample, error) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s, err := readCPU()
		if err != nil {
			return s, err
		}
		if s.procs[group] <= a.procs[group] || time.Now().After(deadline) {
			return readCPU()
		}
	}
}
