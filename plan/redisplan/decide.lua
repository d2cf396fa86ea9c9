-- One decision of a plan: every limit (GCRA) and the quota, atomically.
--
-- KEYS: one key per limit (its theoretical arrival time, TAT, in
-- microseconds since 1970), then the quota's counter if there is a quota.
-- ARGV: mode ("d" decide and spend, "a" admit if one unit is left and
-- spend nothing, "c" charge unconditionally, "p" decide as "d" and spend
-- nothing), the number of limits, the
-- cost, the time in microseconds (0: Redis's clock); for each limit its
-- emission interval in microseconds and its burst; then, with a quota,
-- its count, its period's end in Unix milliseconds (when the counter
-- expires, by the clock of the decision), and the used count to start a missing counter from (-1:
-- unknown, answer {-1} so that the caller restores it).
--
-- Reply: {allowed, quota used after, now, then for each limit: admitted,
-- microseconds until its bucket was full before this request}.
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

local allowed = true
local tats, ivs, oks = {}, {}, {}
for i = 1, nl do
  local iv = tonumber(ARGV[3 + 2 * i])
  local burst = tonumber(ARGV[4 + 2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or 0)
  if tat < now then tat = now end
  tats[i], ivs[i] = tat, iv
  -- Admitted if need units fit in the bucket; the epsilon (a nanosecond)
  -- absorbs float rounding of intervals that are not whole microseconds.
  local ok = mode == 'c' or (tat - now) + need * iv <= burst * iv + 0.001
  oks[i] = ok
  if not ok then allowed = false end
end

local used = 0
local qkey, qttl
if #KEYS > nl then
  qkey = KEYS[nl + 1]
  local count = tonumber(ARGV[5 + 2 * nl])
  -- The counter expires at the period's end, by the decision's clock.
  qttl = math.ceil(tonumber(ARGV[6 + 2 * nl]) - now / 1000)
  if qttl < 1 then qttl = 1 end
  local v = redis.call('GET', qkey)
  if v then
    used = tonumber(v)
  else
    local base = tonumber(ARGV[7 + 2 * nl])
    if base < 0 then return {-1} end
    used = base
    redis.call('SET', qkey, used, 'PX', qttl)
  end
  if mode ~= 'c' and used + need > count then allowed = false end
end

local spend = mode == 'c' or (allowed and mode == 'd')
local reply = {allowed and 1 or 0, 0, string.format('%.17g', now)}
for i = 1, nl do
  local tat = tats[i]
  reply[#reply + 1] = oks[i] and 1 or 0
  reply[#reply + 1] = string.format('%.17g', tat - now)
  if spend then
    tat = tat + cost * ivs[i]
    local ttl = math.ceil((tat - now) / 1000)
    if ttl < 1 then ttl = 1 end
    redis.call('SET', KEYS[i], string.format('%.17g', tat), 'PX', ttl)
  end
end
if qkey then
  if spend then
    used = redis.call('INCRBY', qkey, cost)
    redis.call('PEXPIRE', qkey, qttl)
  end
  reply[2] = used
end
return reply
