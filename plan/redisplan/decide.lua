-- One decision of a plan: every limit (GCRA) and the quota, atomically,
-- in one hash per identity, read once (HMGET) and written once (HSET,
-- PEXPIRE). Times are whole microseconds: the script works in integers
-- (exact in Lua's doubles up to 2^53) and formats no floats.
--
-- KEYS[1]: the identity's hash. Its fields: one per limit, named by the
-- caller (the limit's theoretical arrival time, TAT, in microseconds since
-- 1970), and for the quota "q" (units used) and "qp" (the period they were
-- used in).
-- ARGV: mode ("d" decide and spend, "a" admit if one unit is left and
-- spend nothing, "c" charge unconditionally, "p" decide as "d" and spend
-- nothing), the number of limits, the cost, the time in microseconds (0:
-- Redis's clock); for each limit its field, its emission interval in whole
-- microseconds and its burst; then, with a quota, its count, its period's
-- name, its period's end in microseconds, and the used count to start a
-- missing counter from (-1: unknown, answer {-1} so that the caller
-- restores it).
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
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local need = cost
if mode == 'a' then need = 1 end
local qarg = 5 + 3 * nl
local hasq = #ARGV >= qarg

local fields = {}
for i = 1, nl do fields[i] = ARGV[2 + 3 * i] end
if hasq then
  fields[nl + 1] = 'q'
  fields[nl + 2] = 'qp'
end
local vals = redis.call('HMGET', KEYS[1], unpack(fields))

local allowed = true
local flags = 0
local reply = {0, 0}
local tats, ivs = {}, {}
for i = 1, nl do
  local iv = tonumber(ARGV[3 + 3 * i])
  local burst = tonumber(ARGV[4 + 3 * i])
  local tat = tonumber(vals[i]) or 0
  if tat < now then tat = now end
  tats[i], ivs[i] = tat, iv
  if mode == 'c' or (tat - now) + need * iv <= burst * iv then
    flags = flags + 2 ^ i
  else
    allowed = false
  end
  reply[2 + i] = tat - now
end

local used = 0
local qttl = 0
local qwrite = false
local period
if hasq then
  local count = tonumber(ARGV[qarg])
  period = ARGV[qarg + 1]
  qttl = math.ceil((tonumber(ARGV[qarg + 2]) - now) / 1000)
  if vals[nl + 1] and vals[nl + 2] == period then
    used = tonumber(vals[nl + 1])
  else
    local base = tonumber(ARGV[qarg + 3])
    if base < 0 then return {-1} end
    used = base
    qwrite = true
  end
  if mode ~= 'c' and used + need > count then allowed = false end
end

local spend = mode == 'c' or (allowed and mode == 'd')
local set = {}
if spend then
  for i = 1, nl do
    tats[i] = tats[i] + cost * ivs[i]
    set[#set + 1] = fields[i]
    set[#set + 1] = tats[i]
  end
  if hasq then
    used = used + cost
    qwrite = true
  end
end
if qwrite then
  set[#set + 1] = 'q'
  set[#set + 1] = used
  set[#set + 1] = 'qp'
  set[#set + 1] = period
end
if #set > 0 then
  -- The hash lives while a bucket refills or the quota's period lasts.
  local ttl = 1
  if qwrite and qttl > ttl then ttl = qttl end
  for i = 1, nl do
    local t = math.ceil((tats[i] - now) / 1000)
    if t > ttl then ttl = t end
  end
  redis.call('HSET', KEYS[1], unpack(set))
  redis.call('PEXPIRE', KEYS[1], ttl)
end
if allowed then flags = flags + 1 end
reply[1] = flags
reply[2] = used
return reply
