-- One decision of a plan: every limit (GCRA) and the quota, atomically,
-- in one hash per identity, read once (HMGET) and written at most once
-- (HSET; PEXPIRE only when the hash must live longer). Times are whole
-- microseconds: the script works in integers (exact in Lua's doubles up
-- to 2^53) and formats no floats. Tables are built at their full size,
-- since growing them is much of a short script's time.
--
-- KEYS[1]: the identity's hash. Its fields: one per limit, named by the
-- caller (the limit's theoretical arrival time, TAT, in microseconds
-- since 1970); "q" and "qp", the quota's units used and the period they
-- count; "x", when the hash expires, by the clock of the decisions.
--
-- ARGV:
--   1 mode: "d" decide and spend, "a" admit if one unit is left and spend
--     nothing, "c" charge unconditionally, "p" decide as "d" and spend
--     nothing;
--   2 the number of limits n; 3 the cost; 4 the time in microseconds (0:
--     Redis's clock);
--   5 .. 4+n the limits' fields, then "q", "qp", "x" (the fields to read,
--     contiguous);
--   then for each limit its emission interval and its capacity (burst
--     times interval), in whole microseconds;
--   then, with a quota, its count, its period's name, its period's end in
--     microseconds, and the used count to start a missing counter from
--     (-1: unknown, answer {-1} so that the caller restores it).
--
-- Reply: {flags, quota used after, then for each limit the microseconds
-- until its bucket was full before this request}; flags has bit 0 set if
-- the request is admitted and bit i if limit i admits it.
local mode = ARGV[1]
local nl = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now == 0 then
  if redis.replicate_commands then redis.replicate_commands() end
  local t = redis.call('TIME')
  now = t[1] * 1000000 + t[2]
end
local need = cost
if mode == 'a' then need = 1 end

local vals = redis.call('HMGET', KEYS[1], unpack(ARGV, 5, 7 + nl))

local allowed = true
local flags = 0
local reply = {0, 0, false, false, false, false}
local tats = {0, 0, 0, 0}
local ivs = {0, 0, 0, 0}
local a = 8 + nl
for i = 1, nl do
  local iv = tonumber(ARGV[a])
  local tat = tonumber(vals[i]) or now
  if tat < now then tat = now end
  if mode == 'c' or tat - now + need * iv <= tonumber(ARGV[a + 1]) then
    flags = flags + 2 ^ i
  else
    allowed = false
  end
  tats[i], ivs[i] = tat, iv
  reply[2 + i] = tat - now
  a = a + 2
end

local used = 0
local write = false
local period, qend
if #ARGV > a then
  period = ARGV[a + 1]
  qend = tonumber(ARGV[a + 2])
  if vals[nl + 1] and vals[nl + 2] == period then
    used = tonumber(vals[nl + 1])
  else
    local base = tonumber(ARGV[a + 3])
    if base < 0 then return {-1} end
    used = base
    write = true
  end
  if mode ~= 'c' and used + need > tonumber(ARGV[a]) then allowed = false end
end

if mode == 'c' or (allowed and mode == 'd') then
  for i = 1, nl do tats[i] = tats[i] + cost * ivs[i] end
  if period then used = used + cost end
  write = true
end
if write then
  local set = {false, false, false, false, false, false, false, false, false, false, false, false, false, false}
  local n = 0
  local last = now
  for i = 1, nl do
    set[n + 1], set[n + 2] = ARGV[4 + i], tats[i]
    n = n + 2
    if tats[i] > last then last = tats[i] end
  end
  if period then
    set[n + 1], set[n + 2], set[n + 3], set[n + 4] = 'q', used, 'qp', period
    n = n + 4
  end
  -- The hash must live until every bucket is full and the quota's period
  -- is over. When it would expire sooner, it is given as long again as
  -- its buckets need, so that a busy identity extends it seldom.
  local expires = last
  if period and qend > expires then expires = qend end
  local x = tonumber(vals[nl + 3]) or 0
  local extend = expires > x
  if extend then
    x = expires + (last - now)
    set[n + 1], set[n + 2] = 'x', x
    n = n + 2
  end
  redis.call('HSET', KEYS[1], unpack(set, 1, n))
  if extend then
    redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((x - now) / 1000)))
  end
end
if allowed then flags = flags + 1 end
reply[1] = flags
reply[2] = used
reply[3 + nl] = nil
return reply
