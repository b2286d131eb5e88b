-- Rebuild one scope's counters for a day from the durable ledger, once.
-- KEYS: used, done.  ARGV: key_ttl_s, then (request_id, tokens, cost) for each ledger row.
-- A row whose request id is already in `done` was settled into this (post-restart) hash
-- before the rebuild, so it is not counted twice. Returns 0 if already seeded.
local function fmt(n) return string.format('%d', n) end
if redis.call('HEXISTS', KEYS[1], 'seeded') == 1 then return 0 end
local tokens, cost = 0, 0
for j = 2, #ARGV, 3 do
  if redis.call('SADD', KEYS[2], ARGV[j]) == 1 then
    tokens = tokens + tonumber(ARGV[j + 1])
    cost = cost + tonumber(ARGV[j + 2])
  end
end
redis.call('HINCRBY', KEYS[1], 'tokens', fmt(tokens))
redis.call('HINCRBY', KEYS[1], 'cost', fmt(cost))
redis.call('HSET', KEYS[1], 'seeded', '1')
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
return 1
