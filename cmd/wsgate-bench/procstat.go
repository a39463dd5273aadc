package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. The
// kernel fixes it at 100 for user space on every mainstream Linux
// architecture (getconf CLK_TCK prints 100 on the benchmark machines), so it
// is a constant rather than a sysconf call through cgo.
const clockTicks = 100

// procSet is the processes named by -pid. Their figures are summed, so that
// a master and its workers count as one proxy.
type procSet []int

// cpuTimes is CPU time used: in all (user+system), and of that in the
// kernel (system).
type cpuTimes struct {
	total, sys time.Duration
}

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{total: c.total - o.total, sys: c.sys - o.sys}
}

// cpu returns the CPU time the processes have used so far.
func (ps procSet) cpu() (cpuTimes, error) {
	var sum cpuTimes
	for _, pid := range ps {
		c, err := readProcCPU(pid)
		if err != nil {
			return cpuTimes{}, err
		}
		sum.total += c.total
		sum.sys += c.sys
	}
	return sum, nil
}

// rssKB returns the processes' summed resident set size in kB.
func (ps procSet) rssKB() (int64, error) {
	var total int64
	for _, pid := range ps {
		kb, err := readProcRSS(pid)
		if err != nil {
			return 0, err
		}
		total += kb
	}
	return total, nil
}

func readProcCPU(pid int) (cpuTimes, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTimes{}, fmt.Errorf("pid %d: %w", pid, err)
	}
	utime, stime, err := parseProcStat(data)
	if err != nil {
		return cpuTimes{}, fmt.Errorf("pid %d: /proc stat: %w", pid, err)
	}
	const tick = time.Second / clockTicks
	return cpuTimes{total: time.Duration(utime+stime) * tick, sys: time.Duration(stime) * tick}, nil
}

// parseProcStat returns utime and stime in clock ticks from the contents
// of /proc/PID/stat. The command name (field 2) is in parentheses and may hold
// spaces and parentheses itself, so fields are counted from the last ')':
// after it come state (field 3) and so on, putting utime (field 14) and
// stime (field 15) at offsets 11 and 12.
func parseProcStat(data []byte) (utime, stime uint64, err error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, errors.New("no command name")
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("%d fields after the command name, want at least 13", len(f))
	}
	if utime, err = strconv.ParseUint(string(f[11]), 10, 64); err != nil {
		return 0, 0, fmt.Errorf("utime: %w", err)
	}
	if stime, err = strconv.ParseUint(string(f[12]), 10, 64); err != nil {
		return 0, 0, fmt.Errorf("stime: %w", err)
	}
	return utime, stime, nil
}

func readProcRSS(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	kb, err := parseStatusKB(data, "VmRSS:")
	if err != nil {
		return 0, fmt.Errorf("pid %d: /proc status: %w", pid, err)
	}
	return kb, nil
}

// parseStatusKB finds a line such as "VmRSS:	   12345 kB" in the contents
// of /proc/PID/status and returns the number.
func parseStatusKB(data []byte, key string) (int64, error) {
	for line := range bytes.Lines(data) {
		rest, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("%s %q: want a number of kB", key, bytes.TrimSpace(rest))
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, fmt.Errorf("no %s line (a kernel thread, or a zombie?)", key)
}

// cpuStat is one CPU's line of /proc/stat, in clock ticks: the time the
// hypervisor gave this virtual CPU's host core to someone else (steal), and
// all of its time.
type cpuStat struct{ steal, total uint64 }

// readCPUStats returns /proc/stat's per-CPU lines by name ("cpu0", ...).
func readCPUStats() (map[string]cpuStat, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return nil, err
	}
	return parseCPUStats(data)
}

// parseCPUStats parses the "cpuN user nice system idle iowait irq softirq
// steal ..." lines of /proc/stat. guest and guest_nice are already counted
// in user and nice, so the total is the sum of the first eight fields.
func parseCPUStats(data []byte) (map[string]cpuStat, error) {
	out := map[string]cpuStat{}
	for line := range bytes.Lines(data) {
		f := bytes.Fields(line)
		if len(f) == 0 || !bytes.HasPrefix(f[0], []byte("cpu")) || len(f[0]) == 3 {
			continue // not a CPU line, or the all-CPU "cpu" line
		}
		if len(f) < 9 {
			return nil, fmt.Errorf("/proc/stat %s: %d fields, want at least 9", f[0], len(f))
		}
		var st cpuStat
		for i := 1; i <= 8; i++ {
			v, err := strconv.ParseUint(string(f[i]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/stat %s field %d: %w", f[0], i, err)
			}
			st.total += v
			if i == 8 {
				st.steal = v
			}
		}
		out[string(f[0])] = st
	}
	if len(out) == 0 {
		return nil, errors.New("/proc/stat: no per-CPU lines")
	}
	return out, nil
}

// stealPct is each CPU's steal time between two samples as a percentage of
// its time, rounded to 0.1.
func stealPct(before, after map[string]cpuStat) map[string]float64 {
	out := map[string]float64{}
	for cpu, a := range after {
		b, ok := before[cpu]
		if !ok || a.total <= b.total {
			continue
		}
		out[cpu] = round(100*float64(a.steal-b.steal)/float64(a.total-b.total), 1)
	}
	return out
}

// readOpenFileLimit returns the soft "Max open files" limit of a process
// from /proc/PID/limits, or -1 when it is unlimited.
func readOpenFileLimit(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, fmt.Errorf("pid %d: %w", pid, err)
	}
	for line := range bytes.Lines(data) {
		rest, ok := bytes.CutPrefix(line, []byte("Max open files"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) == 0 {
			break
		}
		if string(f[0]) == "unlimited" {
			return -1, nil
		}
		return strconv.ParseInt(string(f[0]), 10, 64)
	}
	return 0, fmt.Errorf("pid %d: no \"Max open files\" in /proc limits", pid)
}
