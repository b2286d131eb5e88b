-- Drop a reservation (nothing used) in every scope and free its stream slot. Idempotent.
-- KEYS: 8 per scope (limits, streams, rpm, used, resv, ask, done, alerted); ARGV: request_id, key_ttl_s
local function fmt(n) return string.format('%d', n) end
local nscopes = #KEYS / 8
local rid, key_ttl = ARGV[1], tonumber(ARGV[2])
local function k(i, n) return KEYS[i * 8 + n] end
if redis.call('SADD', k(0, 7), rid) == 0 then return 0 end
for i = 0, nscopes - 1 do
  if i > 0 then redis.call('SADD', k(i, 7), rid) end
  local a = redis.call('HGET', k(i, 6), rid)
  if a then
    local at, ac = string.match(a, '^(%d+) (%d+)')
    redis.call('HINCRBY', k(i, 4), 'held_tokens', fmt(-tonumber(at)))
    redis.call('HINCRBY', k(i, 4), 'held_cost', fmt(-tonumber(ac)))
    redis.call('HDEL', k(i, 6), rid)
    redis.call('ZREM', k(i, 5), rid)
  end
  redis.call('ZREM', k(i, 2), rid)
  redis.call('EXPIRE', k(i, 7), key_ttl)
end
return 1
