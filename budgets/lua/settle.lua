-- Replace a reservation by what was actually used, in every scope; free its stream slot.
-- KEYS: 7 per scope (limits, streams, rpm, used, resv, ask, done)
-- ARGV: request_id, tokens_used, cost_micros, key_ttl_s, unmetered (1: reserved while
--       Redis was down, so nothing was held and nothing is overshoot)
-- Returns {'dup'} when already settled or released (idempotent), else
--         {'ok', overshoot_tokens, overshoot_cost} of the first scope.
-- Overshoot is use beyond what was held: a provider that used more than reserved, or a
-- late settle whose reservation had already expired. It is added to `over_*` counters.
local function fmt(n) return string.format('%d', n) end
local nscopes = #KEYS / 7
local rid = ARGV[1]
local tokens, cost = tonumber(ARGV[2]), tonumber(ARGV[3])
local key_ttl, unmetered = tonumber(ARGV[4]), ARGV[5] == '1'
local function k(i, n) return KEYS[i * 7 + n] end
if redis.call('SADD', k(0, 7), rid) == 0 then return {'dup'} end
local first_ot, first_oc = 0, 0
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
  redis.call('HINCRBY', k(i, 4), 'tokens', fmt(tokens))
  redis.call('HINCRBY', k(i, 4), 'cost', fmt(cost))
  if ot > 0 then redis.call('HINCRBY', k(i, 4), 'over_tokens', fmt(ot)) end
  if oc > 0 then redis.call('HINCRBY', k(i, 4), 'over_cost', fmt(oc)) end
  for n = 4, 7 do redis.call('EXPIRE', k(i, n), key_ttl) end
  if i == 0 then first_ot, first_oc = ot, oc end
end
return {'ok', string.format('%d', first_ot), string.format('%d', first_oc)}
