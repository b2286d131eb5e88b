-- Reserve tokens and micro-dollars for one request across every scope that applies.
-- KEYS[1] = limits generation; then 8 keys per scope (see budgets/keys.py SCOPE_KEY_NAMES):
--   limits, streams, rpm, used, resv, ask, done, alerted
-- ARGV: day, request_id, model, prompt_tokens, max_tokens, prompt_cost_micros,
--       output_price_micros_per_mtok, ttl_ms, key_ttl_s, min_reply_tokens,
--       background ('1': queued work such as a batch item, which is metered in tokens and cost
--       but neither counts against nor takes a slot of the per-minute and concurrent limits),
--       full_mark ('100' when 100% is an alert threshold, else ''): a budget refusal marks
--       it crossed for the scope that refused, so admins hear the limit was reached
-- A scope's limits hash may hold daily_tokens / daily_cost -1 (no such limit), rpm and
-- concurrent 0 (none), models '' (any), label (a name for messages) and member '0' (the
-- user no longer belongs to the team this call bills).
-- Returns one of:
--   {'need', 'limits:<i>' | 'used:<i>', ...}  cached limits stale or today's counters missing
--   {'refused', code, limit, scope_index, retry_after_ms (-1: none), limit_value, fit, label,
--    newly_marked (0/1)}
--   {'ok', granted, capped, ask_tokens, ask_cost, expires_ms, now_ms, duplicate (0/1)}
--   {'error', 'request_id_used'}
-- All clocks are the Redis server's (TIME), so expiry never depends on a worker's clock.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gen = redis.call('GET', KEYS[1]) or '0'
local nscopes = (#KEYS - 1) / 8
local day, rid, model = ARGV[1], ARGV[2], ARGV[3]
local prompt, want = tonumber(ARGV[4]), tonumber(ARGV[5])
local pcost, oprice = tonumber(ARGV[6]), tonumber(ARGV[7])
local ttl_ms, key_ttl, min_reply = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])
local background = ARGV[11] == '1'
local full_mark = ARGV[12] or ''
local S = 8

local function fmt(n) return string.format('%d', n) end
local function k(i, n) return KEYS[1 + i * S + n] end
local function hash(key)
  local flat, out = redis.call('HGETALL', key), {}
  for j = 1, #flat, 2 do out[flat[j]] = flat[j + 1] end
  return out
end
local function num(h, f) return tonumber(h[f] or '0') or 0 end
-- Cost of n output tokens, rounded up to a whole micro-dollar (n * price stays below 2^53).
local function out_cost(n) if oprice == 0 or n <= 0 then return 0 end
  return math.ceil(n * oprice / 1000000) end

-- 1. Anything to load first? (Python fills it and calls again.)
local needs = {'need'}
for i = 0, nscopes - 1 do
  if redis.call('HGET', k(i, 1), 'gen') ~= gen then needs[#needs + 1] = 'limits:' .. i end
  if redis.call('HEXISTS', k(i, 4), 'seeded') == 0 then needs[#needs + 1] = 'used:' .. i end
end
if #needs > 1 then return needs end

-- 2. The same request id again: the live reservation stands; a finished one is an error.
local existing = redis.call('HGET', k(0, 6), rid)
if existing then
  local at, ac, ag = string.match(existing, '^(%d+) (%d+) (%d+)')
  local exp = redis.call('ZSCORE', k(0, 5), rid) or now
  return {'ok', ag, ag, at, ac, fmt(tonumber(exp)), fmt(now), '1'}
end
if redis.call('SISMEMBER', k(0, 7), rid) == 1 then return {'error', 'request_id_used'} end

local function refused(code, limit, i, retry, value, fit, mark)
  local marked = '0'
  if mark and full_mark ~= '' and redis.call('SADD', k(i, 8), full_mark) == 1 then
    redis.call('EXPIRE', k(i, 8), key_ttl)
    marked = '1'
  end
  return {'refused', code, limit, fmt(i), retry, fmt(value), fmt(fit),
    redis.call('HGET', k(i, 1), 'label') or '', marked}
end

-- 3. Prune what has expired (a crashed worker's reservations free themselves), then check.
local limits, used = {}, {}
local cap = want
for i = 0, nscopes - 1 do
  local L = hash(k(i, 1))
  limits[i] = L
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', k(i, 5), '-inf', now)) do
    local a = redis.call('HGET', k(i, 6), id)
    if a then
      local at, ac = string.match(a, '^(%d+) (%d+)')
      redis.call('HINCRBY', k(i, 4), 'held_tokens', fmt(-tonumber(at)))
      redis.call('HINCRBY', k(i, 4), 'held_cost', fmt(-tonumber(ac)))
      redis.call('HDEL', k(i, 6), id)
    end
    redis.call('ZREM', k(i, 5), id)
  end
  redis.call('ZREMRANGEBYSCORE', k(i, 2), '-inf', now)
  redis.call('ZREMRANGEBYSCORE', k(i, 3), '-inf', now - 60000)

  if L['member'] == '0' then return refused('not_a_member', 'team', i, '-1', 0, 0) end
  local models = L['models'] or ''
  if models ~= '' and not string.find(models, '|' .. model .. '|', 1, true) then
    return refused('model_not_allowed', 'allowed_models', i, '-1', 0, 0)
  end
  local rpm = num(L, 'rpm')
  if not background and rpm > 0 and redis.call('ZCARD', k(i, 3)) >= rpm then
    local oldest = redis.call('ZRANGE', k(i, 3), 0, 0, 'WITHSCORES')
    local retry = math.max(1, tonumber(oldest[2]) + 60000 - now)
    return refused('rate_limited', 'rpm', i, fmt(retry), rpm, 0)
  end
  local conc = num(L, 'concurrent')
  if not background and conc > 0 and redis.call('ZCARD', k(i, 2)) >= conc then
    return refused('too_many_streams', 'concurrent', i, '-1', conc, 0)
  end
  local max_out = num(L, 'max_output')
  if max_out > 0 and max_out < cap then cap = max_out end
  used[i] = hash(k(i, 4))
end

-- 4. The budget arithmetic: the reply gets the largest output that fits every scope's
-- tokens (limit + today's extra - settled - held - prompt) and cost (same, in micros).
local fit, bind_limit, bind_scope, bind_value = cap, '', 0, 0
for i = 0, nscopes - 1 do
  local L, U = limits[i], used[i]
  local tokens_limit = num(L, 'daily_tokens')
  if tokens_limit >= 0 and L['daily_tokens'] then
    if L['extra_day'] == day then tokens_limit = tokens_limit + num(L, 'extra_tokens') end
    local tl = tokens_limit - num(U, 'tokens') - num(U, 'held_tokens') - prompt
    if tl < fit then fit, bind_limit, bind_scope, bind_value = tl, 'daily_tokens', i, tokens_limit end
  end
  local cost_limit = num(L, 'daily_cost')
  if cost_limit >= 0 and L['daily_cost'] then
    local cl = cost_limit - num(U, 'cost') - num(U, 'held_cost') - pcost
    local n = cap
    if cl < 0 then
      n = -1
    elseif oprice > 0 then
      n = math.min(cap, math.floor(cl * 1000000 / oprice))
      while n > 0 and out_cost(n) > cl do n = n - 1 end
    end
    if n < fit then fit, bind_limit, bind_scope, bind_value = n, 'daily_cost', i, cost_limit end
  end
end
if fit < cap and (fit < min_reply or fit < 1) then
  return refused('budget_exceeded', bind_limit, bind_scope, '-1', bind_value, fit, true)
end

-- 5. Hold it in every scope.
local ask_tokens, ask_cost = prompt + fit, pcost + out_cost(fit)
local exp = now + ttl_ms
local record = fmt(ask_tokens) .. ' ' .. fmt(ask_cost) .. ' ' .. fmt(fit)
for i = 0, nscopes - 1 do
  redis.call('ZADD', k(i, 5), exp, rid)
  redis.call('HSET', k(i, 6), rid, record)
  redis.call('HINCRBY', k(i, 4), 'held_tokens', fmt(ask_tokens))
  redis.call('HINCRBY', k(i, 4), 'held_cost', fmt(ask_cost))
  redis.call('HINCRBY', k(i, 4), 'requests', fmt(1))
  if not background and num(limits[i], 'concurrent') > 0 then redis.call('ZADD', k(i, 2), exp, rid) end
  if not background and num(limits[i], 'rpm') > 0 then redis.call('ZADD', k(i, 3), now, rid) end
  for n = 2, 7 do redis.call('EXPIRE', k(i, n), key_ttl) end
end
return {'ok', fmt(fit), fmt(cap), fmt(ask_tokens), fmt(ask_cost), fmt(exp), fmt(now), '0'}
