package redisplan

import (
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/apikit/apikit/plan"
)

// The decision script is generated for each shape of request: its
// limits, its quota, and whether the caller gives the time. Each script
// is straight-line Lua: no loops, no tables but the reply, and the
// constants of the request's limits and quota written into the source
// (for the shapes a Decider meets most, see maxBakedScripts), so that
// Redis parses few arguments and runs little more than the two or three
// commands of a decision.
//
// KEYS[1] is the identity's state: one string of 2×plan.MaxLimits+3
// little-endian doubles (struct.pack), read with one GET and written with
// one SET … PX: for each limit slot, the limit's id (a hash of the limit,
// so that a limit's state carries over to another plan with the same
// limit) and its theoretical arrival time (TAT) in microseconds since
// 1970; then the quota's period id and its units used; then when the
// state may expire, by the clock of the decisions (the quota's period
// end, kept by decisions without a quota). Times are whole
// microseconds and the doubles hold integers (exact up to 2^53): the
// script formats no number and parses no string but its arguments.
//
// ARGV:
//
//	1 mode: "d" decide and spend, "a" admit if one unit is left and spend
//	  nothing, "c" charge unconditionally, "p" decide as "d" and spend
//	  nothing;
//	2 the cost;
//	3 the time in microseconds, if the caller gives it (else Redis's TIME);
//	then, with a quota, its period's id, its period's end in
//	  microseconds, and the used count to start a missing counter from
//	  (-1: unknown, answer {-1} so that the caller restores it);
//	then, for a shape whose constants are not in the source, each
//	  limit's id, emission interval and capacity (burst times interval)
//	  in whole microseconds, and the quota's count.
//
// Reply: {flags, quota used after (0 without a quota), then for each
// limit the microseconds until its bucket was full before this request};
// flags has bit 0 set if the request is admitted and bit i if limit i
// admits it. Every value is an integer.

// stateSlots is the number of doubles in an identity's state.
const stateSlots = 2*plan.MaxLimits + 3

// shape is what a script is generated for.
type shape struct {
	limits int  // 1 to plan.MaxLimits
	quota  bool // the request has a quota
	clock  bool // ARGV[3] is the time; else the script asks Redis
	// baked: the constants below are in the source; else in ARGV.
	baked bool
	ids   [plan.MaxLimits]int64 // each limit's id
	ivs   [plan.MaxLimits]int64 // each limit's emission interval, µs
	caps  [plan.MaxLimits]int64 // each limit's capacity, µs
	count int64                 // the quota's count
}

// limitID is the id of a limit in an identity's state: 52 bits of a
// hash of its text, so that it is exact in a double.
func limitID(text string) int64 {
	h := fnv.New64a()
	h.Write([]byte(text))
	return int64(h.Sum64() & (1<<52 - 1))
}

// newScript generates the script of shape s.
func newScript(s shape) *redis.Script { return redis.NewScript(scriptSource(s)) }

// scriptSource generates the Lua source of the script of shape s.
func scriptSource(s shape) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	n := s.limits
	p("-- apikit plan decision: %d limit(s), quota %t, caller's clock %t, constants in the source %t", n, s.quota, s.clock, s.baked)
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
	var period, qend, base string
	if s.quota {
		period, qend, base = fmt.Sprintf("tonumber(ARGV[%d])", a), fmt.Sprintf("tonumber(ARGV[%d])", a+1), fmt.Sprintf("tonumber(ARGV[%d])", a+2)
		a += 3
	}
	// constant returns the source of a constant: a literal, or the next
	// argument.
	constant := func(v int64) string {
		if s.baked {
			return strconv.FormatInt(v, 10)
		}
		a++
		return fmt.Sprintf("tonumber(ARGV[%d])", a-1)
	}
	p("local need = cost")
	p("if mode == 'a' then need = 1 end")
	p("local charge = mode == 'c'")
	// The stored slots: p1, s1 (id and TAT of the first limit slot), …, qp, qu.
	vars := make([]string, 0, stateSlots)
	for i := 1; i <= plan.MaxLimits; i++ {
		vars = append(vars, fmt.Sprintf("p%d", i), fmt.Sprintf("s%d", i))
	}
	vars = append(vars, "qp", "qu", "x")
	p("local %s", strings.Join(vars, ", "))
	p("local v = redis.call('GET', KEYS[1])")
	p("if v and #v == %d then %s = struct.unpack('<%s', v) end", 8*stateSlots, strings.Join(vars, ", "), strings.Repeat("d", stateSlots))
	p("local ok, flags = true, 0")
	for i := 1; i <= n; i++ {
		p("local id%d, iv%d, cap%d = %s, %s, %s", i, i, i, constant(s.ids[i-1]), constant(s.ivs[i-1]), constant(s.caps[i-1]))
		// The limit's slot: its own first, then any other (a plan whose
		// limits changed order).
		find := []string{fmt.Sprintf("(p%d == id%d and s%d)", i, i, i)}
		for j := 1; j <= plan.MaxLimits; j++ {
			if j != i {
				find = append(find, fmt.Sprintf("(p%d == id%d and s%d)", j, i, j))
			}
		}
		p("local tat%d = %s or now", i, strings.Join(find, " or "))
		p("if tat%d < now then tat%d = now end", i, i)
		p("local w%d = tat%d - now", i, i)
		p("if charge or w%d + need * iv%d <= cap%d then flags = flags + %d else ok = false end", i, i, i, 1<<i)
	}
	p("local used, write = 0, false")
	if s.quota {
		p("local period, qend = %s, %s", period, qend)
		p("if qp == period then")
		p("  used = qu")
		p("else")
		p("  used = %s", base)
		p("  if used < 0 then return {-1} end")
		p("  write = true")
		p("end")
		p("if not charge and used + need > %s then ok = false end", constant(s.count))
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
	// The state must live until every bucket is full and the quota's
	// period is over, and a second longer.
	p("  local expires = x or now")
	for i := 1; i <= n; i++ {
		p("  if tat%d > expires then expires = tat%d end", i, i)
	}
	if s.quota {
		p("  if qend > expires then expires = qend end")
	}
	slots := make([]string, 0, stateSlots)
	for i := 1; i <= plan.MaxLimits; i++ {
		if i <= n {
			slots = append(slots, fmt.Sprintf("id%d, tat%d", i, i))
		} else {
			slots = append(slots, "0, 0")
		}
	}
	if s.quota {
		slots = append(slots, "period, used, expires")
	} else {
		slots = append(slots, "qp or 0, qu or 0, expires") // the quota's state, for the next plan with one
	}
	p("  redis.call('SET', KEYS[1], struct.pack('<%s', %s), 'PX', math.ceil((expires - now) / 1000) + 1000)",
		strings.Repeat("d", stateSlots), strings.Join(slots, ", "))
	p("end")
	p("if ok then flags = flags + 1 end")
	reply := []string{"flags", "used"}
	for i := 1; i <= n; i++ {
		reply = append(reply, fmt.Sprintf("w%d", i))
	}
	p("return {%s}", strings.Join(reply, ", "))
	return b.String()
}
