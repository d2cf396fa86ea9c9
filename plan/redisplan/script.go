package redisplan

import (
	"fmt"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/plan"
)

// The decision script is generated for each shape of request: its number
// of limits, whether it has a quota, and whether the caller gives the
// time. Each script is straight-line Lua: no loops, no tables but the
// reply, no argument it does not need, and literal field names for the
// quota, so that Redis spends little more on a decision than on the two
// or three commands it runs.
//
// KEYS[1] is the identity's hash. Its fields: one per limit, named by the
// caller (the limit's theoretical arrival time, TAT, in microseconds
// since 1970); "q" and "qp", the quota's units used and the period they
// count; "x", when the hash expires, by the clock of the decisions. The
// hash is read once (HMGET) and written at most once (HSET; PEXPIRE only
// when the hash must live longer than "x" says). Times are whole
// microseconds: the script works in integers (exact in Lua's doubles up
// to 2^53) and formats no floats.
//
// ARGV:
//
//	1 mode: "d" decide and spend, "a" admit if one unit is left and spend
//	  nothing, "c" charge unconditionally, "p" decide as "d" and spend
//	  nothing;
//	2 the cost;
//	3 the time in microseconds, if the caller gives it (else Redis's TIME);
//	then for each limit its field, its emission interval and its capacity
//	  (burst times interval), in whole microseconds;
//	then, with a quota, its count, its period's name, its period's end in
//	  microseconds, and the used count to start a missing counter from
//	  (-1: unknown, answer {-1} so that the caller restores it).
//
// Reply: {flags, quota used after (0 without a quota), then for each
// limit the microseconds until its bucket was full before this request};
// flags has bit 0 set if the request is admitted and bit i if limit i
// admits it.

// shape is what a script is generated for.
type shape struct {
	limits int  // 1 to plan.MaxLimits
	quota  bool // the request has a quota
	clock  bool // ARGV[3] is the time; else the script asks Redis
}

// scripts holds the script of each shape, generated when first used.
var scripts [plan.MaxLimits + 1][2][2]struct {
	once sync.Once
	s    *redis.Script
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// scriptFor returns the script of shape s.
func scriptFor(s shape) *redis.Script {
	e := &scripts[s.limits][boolIndex(s.quota)][boolIndex(s.clock)]
	e.once.Do(func() { e.s = redis.NewScript(scriptSource(s)) })
	return e.s
}

// scriptSource generates the Lua source of the script of shape s.
func scriptSource(s shape) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	n := s.limits
	p("-- apikit plan decision: %d limit(s), quota %t, caller's clock %t", n, s.quota, s.clock)
	p("local mode = ARGV[1]")
	p("local cost = tonumber(ARGV[2])")
	a := 3 // the next ARGV
	if s.clock {
		p("local now = tonumber(ARGV[3])")
		a++
	} else {
		p("if redis.replicate_commands then redis.replicate_commands() end")
		p("local t = redis.call('TIME')")
		p("local now = t[1] * 1000000 + t[2]")
	}
	p("local need = cost")
	p("if mode == 'a' then need = 1 end")
	// The fields to read: the limits', then the quota's, then "x".
	fields := make([]string, 0, n+3)
	for i := range n {
		fields = append(fields, fmt.Sprintf("ARGV[%d]", a+3*i))
	}
	if s.quota {
		fields = append(fields, "'q'", "'qp'")
	}
	fields = append(fields, "'x'")
	xv := len(fields) // the index of "x" in v
	p("local v = redis.call('HMGET', KEYS[1], %s)", strings.Join(fields, ", "))
	p("local ok, flags = true, 0")
	p("local charge = mode == 'c'")
	for i := 1; i <= n; i++ {
		field, iv, capacity := a, a+1, a+2
		p("local f%d, iv%d = ARGV[%d], tonumber(ARGV[%d])", i, i, field, iv)
		p("local tat%d = tonumber(v[%d]) or now", i, i)
		p("if tat%d < now then tat%d = now end", i, i)
		p("local w%d = tat%d - now", i, i)
		p("if charge or w%d + need * iv%d <= tonumber(ARGV[%d]) then flags = flags + %d else ok = false end", i, i, capacity, 1<<i)
		a += 3
	}
	p("local used, write = 0, false")
	if s.quota {
		count, period, end, base := a, a+1, a+2, a+3
		p("local period = ARGV[%d]", period)
		p("if v[%d] and v[%d] == period then", n+1, n+2)
		p("  used = tonumber(v[%d])", n+1)
		p("else")
		p("  used = tonumber(ARGV[%d])", base)
		p("  if used < 0 then return {-1} end")
		p("  write = true")
		p("end")
		p("if not charge and used + need > tonumber(ARGV[%d]) then ok = false end", count)
		p("local qend = tonumber(ARGV[%d])", end)
	}
	p("if charge or (ok and mode == 'd') then")
	for i := 1; i <= n; i++ {
		p("  tat%d = tat%d + cost * iv%d", i, i, i)
	}
	if s.quota {
		p("  used = used + cost")
	}
	p("  write = true")
	p("end")
	p("if write then")
	// The hash must live until every bucket is full and the quota's period
	// is over. When it would expire sooner, it is given as long again as
	// its buckets need, so that a busy identity extends it seldom.
	p("  local last = now")
	for i := 1; i <= n; i++ {
		p("  if tat%d > last then last = tat%d end", i, i)
	}
	p("  local expires = last")
	if s.quota {
		p("  if qend > expires then expires = qend end")
	}
	p("  local x = tonumber(v[%d]) or 0", xv)
	set := make([]string, 0, 2*n+6)
	for i := 1; i <= n; i++ {
		set = append(set, fmt.Sprintf("f%d, tat%d", i, i))
	}
	if s.quota {
		set = append(set, "'q', used, 'qp', period")
	}
	p("  if expires > x then")
	p("    x = expires + (last - now)")
	p("    redis.call('HSET', KEYS[1], %s, 'x', x)", strings.Join(set, ", "))
	p("    redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((x - now) / 1000)))")
	p("  else")
	p("    redis.call('HSET', KEYS[1], %s)", strings.Join(set, ", "))
	p("  end")
	p("end")
	p("if ok then flags = flags + 1 end")
	reply := []string{"flags", "used"}
	for i := 1; i <= n; i++ {
		reply = append(reply, fmt.Sprintf("w%d", i))
	}
	p("return {%s}", strings.Join(reply, ", "))
	return b.String()
}
