-- Replace a reservation by what was actually used, in every scope; free its stream slot.
-- KEYS: 8 per scope (limits, streams, rpm, used, resv, ask, done, alerted)
-- ARGV: request_id, tokens_used, cost_micros, key_ttl_s, unmetered (1: reserved while
--       Redis was down, so nothing was held and nothing is overshoot), day,
--       thresholds (alert percentages, comma-separated, e.g. '80,100')
-- Returns {'dup'} when already settled or released (idempotent), else
--         {'ok', overshoot_tokens, overshoot_cost, crossing...} where overshoot is of the first
--         scope and each crossing '<scope index>:<percent>' is a threshold this settle took a
--         scope's use to or past for the first time today (SADD on `alerted`: exactly once).
-- Overshoot is use beyond what was held: a provider that used more than reserved, or a
-- late settle whose reservation had already expired. It is added to `over_*` counters.
local function fmt(n) return string.format('%d', n) end
local S = 8
local nscopes = #KEYS / S
local rid = ARGV[1]
local tokens, cost = tonumber(ARGV[2]), tonumber(ARGV[3])
local key_ttl, unmetered = tonumber(ARGV[4]), ARGV[5] == '1'
local day = ARGV[6] or ''
local thresholds = {}
for t in string.gmatch(ARGV[7] or '', '%d+') do thresholds[#thresholds + 1] = tonumber(t) end
local function k(i, n) return KEYS[i * S + n] end
if redis.call('SADD', k(0, 7), rid) == 0 then return {'dup'} end
local result = {'ok', '0', '0'}
for i = 0, nscopes - 1 do
  if i > 0 then redis.call('SADD', k(i, 7), rid) end
  local a = redis.call('HGET', k(i, 6), rid)
  local ot, oc = tokens, cost
  if a then
    local at, ac = string.match(a, '^(%d+) (%d+)')
    at, ac = tonumber(at), tonumber(ac)
    redis.call('HINCRBY', k(i, 4), 'held_tokens', fmt(-at))
    redis.call('HINCRBY', k(i, 4), 'held_cost', fmt(-ac))
    redis.call('HDEL', k(i, 6), rid)
    redis.call('ZREM', k(i, 5), rid)
    ot, oc = math.max(0, tokens - at), math.max(0, cost - ac)
  elseif unmetered then
    ot, oc = 0, 0
  end
  redis.call('ZREM', k(i, 2), rid)
  local used_tokens = redis.call('HINCRBY', k(i, 4), 'tokens', fmt(tokens))
  local used_cost = redis.call('HINCRBY', k(i, 4), 'cost', fmt(cost))
  if ot > 0 then redis.call('HINCRBY', k(i, 4), 'over_tokens', fmt(ot)) end
  if oc > 0 then redis.call('HINCRBY', k(i, 4), 'over_cost', fmt(oc)) end
  for n = 4, 7 do redis.call('EXPIRE', k(i, n), key_ttl) end
  if i == 0 then result[2], result[3] = fmt(ot), fmt(oc) end

  -- Thresholds crossed: use * 100 >= percent * limit, for tokens or cost (-1: no limit).
  if #thresholds > 0 and (tokens > 0 or cost > 0) then
    local lim = redis.call('HMGET', k(i, 1), 'daily_tokens', 'daily_cost', 'extra_day',
      'extra_tokens')
    local tl, cl = tonumber(lim[1] or '-1') or -1, tonumber(lim[2] or '-1') or -1
    if tl >= 0 and lim[3] == day then tl = tl + (tonumber(lim[4] or '0') or 0) end
    for _, pct in ipairs(thresholds) do
      local over = (tl >= 0 and used_tokens > 0 and used_tokens * 100 >= pct * tl)
        or (cl >= 0 and used_cost > 0 and used_cost * 100 >= pct * cl)
      if over and redis.call('SADD', k(i, 8), fmt(pct)) == 1 then
        redis.call('EXPIRE', k(i, 8), key_ttl)
        result[#result + 1] = fmt(i) .. ':' .. fmt(pct)
      end
    end
  end
end
return result
