-- The provider limiter's sliding minute: requests and tokens counted per second.
-- KEYS: requests hash, tokens hash (field: unix second, value: count in that second)
-- ARGV: mode ('note' | 'acquire' | 'read'), requests, tokens, request_cap, token_cap
--       (0: no cap), window_s
-- 'note' always records; 'acquire' records only when used + this stays within both caps;
-- 'read' records nothing.
-- Returns {granted (1/0), wait_ms (-1: never fits), used_requests, used_tokens}, the used
-- counts being the window's before this call. The clock is the Redis server's (TIME), so
-- every process and thread agrees on the window.
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_ms = now_s * 1000 + math.floor(tonumber(t[2]) / 1000)
local mode = ARGV[1]
local req, tok = tonumber(ARGV[2]), tonumber(ARGV[3])
local req_cap, tok_cap, window = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
-- The window is the current second and the window - 1 before it.
local oldest = now_s - window + 1

local function load(key)
  local flat, per, total, stale = redis.call('HGETALL', key), {}, 0, {}
  for j = 1, #flat, 2 do
    local s, n = tonumber(flat[j]), tonumber(flat[j + 1])
    if s < oldest then stale[#stale + 1] = flat[j] else per[s] = n; total = total + n end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
  return per, total
end

local rper, rused = load(KEYS[1])
local tper, tused = load(KEYS[2])
local function fits(r, n)
  return (req_cap == 0 or r + req <= req_cap) and (tok_cap == 0 or n + tok <= tok_cap)
end
if mode == 'read' then return {0, 0, rused, tused} end

if mode == 'note' or fits(rused, tused) then
  local field = string.format('%d', now_s)
  redis.call('HINCRBY', KEYS[1], field, req)
  redis.call('HINCRBY', KEYS[2], field, tok)
  redis.call('EXPIRE', KEYS[1], window * 2)
  redis.call('EXPIRE', KEYS[2], window * 2)
  return {1, 0, rused, tused}
end

-- Refused: walk the seconds oldest first until enough has left the window. Second s
-- leaves it at (s + window) s.
local seen, secs = {}, {}
for s in pairs(rper) do seen[s] = true end
for s in pairs(tper) do seen[s] = true end
for s in pairs(seen) do secs[#secs + 1] = s end
table.sort(secs)
local r, n = rused, tused
for _, s in ipairs(secs) do
  r = r - (rper[s] or 0)
  n = n - (tper[s] or 0)
  if fits(r, n) then return {0, math.max(1, (s + window) * 1000 - now_ms), rused, tused} end
end
return {0, -1, rused, tused}
